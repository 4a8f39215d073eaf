"""The mock meter server: plays the vendor head-end and a fleet of meters and DGs, over HTTP only."""
