"""A small CPU-burning program profiled by the official Pyroscope Python SDK.

Usage: burn.py SERVER_ADDRESS SECONDS

The SDK's own authentication options come from the environment when set:
BURN_APP (application name), BURN_BASIC_USER and BURN_BASIC_PASSWORD
(basic_auth_username/password), BURN_TENANT (tenant_id), BURN_BEARER
(an Authorization header through http_headers).
"""
import os
import sys
import time

import pyroscope

env = os.environ.get
pyroscope.configure(
    application_name=env("BURN_APP", "e2e.python"),
    server_address=sys.argv[1],
    sample_rate=100,
    tags={"region": "eu-west", "version": "1.2"},
    basic_auth_username=env("BURN_BASIC_USER", ""),
    basic_auth_password=env("BURN_BASIC_PASSWORD", ""),
    tenant_id=env("BURN_TENANT", ""),
    http_headers={"Authorization": "Bearer " + env("BURN_BEARER")} if env("BURN_BEARER") else {},
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
