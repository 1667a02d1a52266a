"""Declares trial's ``--reporter=snfd-timed`` (``snfd.testing.reporter``)."""

from twisted.plugins.twisted_trial import _Reporter

Timed = _Reporter(
    "snfd Timed Tree Reporter",
    "snfd.testing.reporter",
    description="the tree reporter, then the slowest tests and modules",
    longOpt="snfd-timed",
    shortOpt=None,
    klass="TimedTreeReporter",
)
