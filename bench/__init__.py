"""v-secure benchmarks: latency, round trips, a peer (credstash), a floor, scaling and cold start.

Run with ``make bench`` (``python -m bench``); results go to stdout and ``bench/results.json``.
"""
