"""One router per resource: studies, trials (and curves), results, operations, pages."""
