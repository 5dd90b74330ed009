"""Safaricom Daraja: the merchants' credentials, encrypted at rest, and the one client that calls Daraja.

The webhook-service (STK Push) and the reconciliation that checks pending payments both call Daraja
through ``client.DarajaClient``; no Flask here.
"""
