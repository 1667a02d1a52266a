"""What talks to Ganeti: below Cyclades, and never importing it.

- ``rapi``: the RAPI v2 client (``GanetiRapi``), its targets and pool;
- ``jobs``: Ganeti jobs (queue files and RAPI answers) as update-path
  messages;
- ``publisher``: ``EventPublisher``, those messages on the bus;
- ``watcher``: ``JobQueueWatcher``, the Ganeti master's job queue as events
  (the ``ganeti-events`` plugin);
- ``poller``: ``RapiJobPoller``, a cluster's jobs as events by polling RAPI.
"""
