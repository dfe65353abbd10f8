# syntax=docker/dockerfile:1
# mesh-egress-gateway container image.
#   docker build -t mesh-egress-gateway:dev .
#   docker run --rm -v ./gateway.yaml:/etc/egress-gateway/gateway.yaml:ro mesh-egress-gateway:dev
# The code runs through tsx (no build step), so the image carries src/ and the production
# dependencies only. Node 22 is the LTS line this image defaults to; the test suite in this
# repository runs on Node 20 (see docs/istio.md for what was and was not verified).
ARG NODE_VERSION=22

# 1. Production dependencies only (tsx is one: it runs the TypeScript at start-up).
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# 2. Type check with the full dependency set. The runtime stage copies src/ from here, so a
#    build whose types do not check never produces an image (BuildKit skips unreferenced stages).
FROM node:${NODE_VERSION}-bookworm-slim AS check
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
RUN npx tsc -p tsconfig.build.json --noEmit

# 3. Runtime: slim Node, non-root, nothing writable needed but /tmp.
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# tsx caches compiled files under $TMPDIR; with a read-only root filesystem that cache is not
# writable (tsx then fails with EACCES), and compiling at start costs well under a second.
ENV NODE_ENV=production \
    TSX_DISABLE_CACHE=1
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY --from=check /app/bin ./bin
COPY --from=check /app/src ./src
# The SPIFFE Workload API definition, loaded at run time by identity.workloadApi.
COPY proto ./proto
# Numeric UID/GID (the image's "node" user) so Kubernetes can enforce runAsNonRoot.
USER 1000:1000
# 3128: proxy listeners (configurable); 9901: admin API (/healthz, /readyz).
EXPOSE 3128 9901
ENTRYPOINT ["node", "bin/egress-gateway.js"]
CMD ["serve", "--config", "/etc/egress-gateway/gateway.yaml"]
