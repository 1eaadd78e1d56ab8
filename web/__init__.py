"""The pages: routes, templates, translations and the browser client (static/)."""
