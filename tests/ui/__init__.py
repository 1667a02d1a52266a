"""The web UI, driven in headless Chromium against a real node."""
