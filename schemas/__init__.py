"""Wire formats: marshmallow schemas for packets, Factech requests and envelopes.

Imports nothing of ours, so the mock meter server and the gateway share it.
"""
