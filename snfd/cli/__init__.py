"""Command-line tools: ``snf-manage`` (administration); ``snf`` to come."""
