"""Deep research: plan sub-questions, retrieve, select passages, write a cited report."""
