"""The object store's limits (reference section 2): how long names may
be, how much metadata and how many groups a path may carry, how long a
listing may get.  Plain constants: the HTTP layer checks requests against
them, the backend checks what it stores, and ``/info`` announces them.

Name lengths count characters; metadata lengths count UTF-8 bytes (the
key after its ``X-*-Meta-`` prefix).
"""

from __future__ import annotations

MAX_ACCOUNT_NAME = 256
MAX_CONTAINER_NAME = 256
MAX_OBJECT_NAME = 1024

MAX_META_KEYS = 32
"""User metadata keys per account, container or object."""
MAX_META_NAME = 128
MAX_META_VALUE = 256
MAX_META_OVERALL = 4096
"""Bytes of the user metadata keys and values one request may set."""

MAX_GROUPS = 32
"""Groups per account."""
MAX_GROUP_MEMBERS = 32

MAX_LIST = 10000
"""Longest listing one request returns (accounts, containers, objects)."""

MAX_HEADER_SIZE = 8192
"""Longest value of one request header (Swift's ``max_header_size``)."""
EXTRA_HEADER_COUNT = 0
"""Swift's ``extra_header_count``: a request may carry ``MAX_HEADER_COUNT``
headers, the metadata keys plus 36 (Swift's allowance for its own and
HTTP's) plus these."""
MAX_HEADER_COUNT = MAX_META_KEYS + 36 + EXTRA_HEADER_COUNT


__all__ = ["EXTRA_HEADER_COUNT", "MAX_ACCOUNT_NAME", "MAX_CONTAINER_NAME", "MAX_GROUPS",
           "MAX_GROUP_MEMBERS", "MAX_HEADER_COUNT", "MAX_HEADER_SIZE", "MAX_LIST",
           "MAX_META_KEYS", "MAX_META_NAME", "MAX_META_OVERALL", "MAX_META_VALUE",
           "MAX_OBJECT_NAME"]
