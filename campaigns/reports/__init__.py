"""Compliance reports (issue 6, item 3): campaign evidence, patient consent ledger, compliance summary.

Each report module has a data function that yields the report's rows from the database (a server-side cursor
for the long ones: QuerySet.iterator), a CSV renderer that streams those rows in constant memory, and a PDF
renderer (WeasyPrint) for a person to read. What every report shares — the provenance block (filters,
generation time, who generated it, the audit chain head), the second-factor re-entry and the audit of the
export itself — is in campaigns.reports.exports.
"""
