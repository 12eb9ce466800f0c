"""Writes about consent: patients, purposes, authorizations granted and revoked. Each audits in the same
transaction as the change it records."""


