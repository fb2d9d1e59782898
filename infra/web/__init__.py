"""The web kit every domain's views share: scope checks, the request's runtime and session, pagination,
problems, idempotency and file links. It sits below the domains; the platform builds the app from it."""
