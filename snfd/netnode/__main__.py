"""``python -m snfd.netnode ifup|ifdown [INTERFACE]|refresh`` (see :mod:`snfd.netnode.hook`)."""

import sys

from snfd.netnode.hook import main

sys.exit(main())
