"""A small CPU-burning program profiled by the official Pyroscope Python SDK.

Usage: burn.py SERVER_ADDRESS SECONDS
"""
import sys
import time

import pyroscope

pyroscope.configure(
    application_name="e2e.python",
    server_address=sys.argv[1],
    sample_rate=100,
    tags={"region": "eu-west", "version": "1.2"},
)


def burn_cycles(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def rest():
    time.sleep(0.0005)


end = time.time() + float(sys.argv[2])
while time.time() < end:
    burn_cycles(200_000)
    rest()

pyroscope.shutdown()
