"""Payhook benchmarks (``make bench``) and fault drills (``make drills``); see README "Performance"."""
