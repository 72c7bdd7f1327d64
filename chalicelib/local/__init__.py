"""The embedded dev stack (``python -m chalicelib.local``, ``make run``) and its test fixtures' parts.

- :mod:`.moto_server`: a moto server in a child process on loopback that dies with its parent;
- :mod:`.bootstrap`: idempotent creation of the tables, KMS keys, audit bucket, bus and queue;
- :mod:`.environment`: point the process at an endpoint and reset cached clients/singletons;
- :mod:`.stack`: moto (or ``V_SECURE_AWS_ENDPOINT``) + bootstrap in one call;
- :mod:`.server`: the HTTP/1.1 server for the Chalice app (real client IP, no Nagle stalls);
- :mod:`.scheduler`: runs the app's ``@app.schedule`` functions on a timer thread.

Example::

    from chalicelib.local.stack import start_local_aws
    from chalicelib.local.server import start_api_server

    aws = start_local_aws(port=0)
    api = start_api_server(port=0)
"""
