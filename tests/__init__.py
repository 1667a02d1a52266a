"""snfd's test suite (``./dev test``)."""

from hypothesis import HealthCheck, settings

# No timing decides a test: Hypothesis's deadline and its "input generation
# is slow" health check would fail a property test on a busy machine (CI saw
# the first draw of a run take over a second), so both are off for the suite.
settings.register_profile("snfd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("snfd")
