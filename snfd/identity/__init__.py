"""Identity and quotas (Astakos): accounts, tokens, Keystone, quotas, projects.

Not built yet; the node core provides what it will stand on.
"""
