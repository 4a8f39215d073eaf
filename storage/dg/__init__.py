"""Diesel generators: what their controllers post, and the ON/OFF callbacks to deliver."""
