# Stand-in for the official node:<version>-bookworm image (Node.js on buildpack-deps: compilers, git,
# python3, curl): the local node:<version>-bookworm-slim stand-in plus what docker/Dockerfile's
# builder stage relies on the official image for.
ARG NODE_SLIM_IMAGE=node:20-bookworm-slim
FROM ${NODE_SLIM_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl git g++ make python3 xz-utils \
 && rm -rf /var/lib/apt/lists/*
