"""Experiments that drive the library end to end (the demo, ablations). The library never imports from here."""
