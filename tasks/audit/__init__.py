"""The document audit: policy, page layout and four auditors (disclaimer, format, grammar, logo)."""
