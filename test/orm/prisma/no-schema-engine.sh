#!/bin/sh
# Stands in for Prisma's schema engine, which `prisma generate` looks for (and would download)
# but does not run for an engine-less client. If a Prisma command does run it, say so and fail.
echo "the Prisma schema engine is not installed here; only 'prisma generate' is supported" >&2
exit 1
