"""Campaigns in the Django admin: nothing (issue 11, "no back doors").

Campaigns, approvals, content (templates, blocks), segments and deliveries all have the product's own pages,
which change them only through the services: an edit after approval voids the approval, the approver is never
the author, and each change is audited. The admin once let an administrator edit an approved campaign's subject,
body, purpose or approver and it stayed approved, with nothing in the audit trail. Deliveries are evidence,
shown in the reports (campaign evidence, patient ledger); they too are not registered."""
