# mesh-egress-gateway container image: compiled JavaScript on Node 24 (the current LTS line).
#   scripts/build-base-image.sh mesh-egress-gateway-base:24 24     # air-gapped: Debian + npm registry
#   DOCKER_BUILDKIT=0 docker build --network host --build-arg BASE=mesh-egress-gateway-base:24 \
#     -t mesh-egress-gateway:dev .
#   docker run --rm --read-only -v ./gateway.yaml:/etc/egress-gateway/gateway.yaml:ro mesh-egress-gateway:dev
# The base is an argument: Docker Hub's node:24-bookworm-slim by default; without Docker Hub,
# --build-arg BASE=mesh-egress-gateway-base:24 (the script above; docs/containers.md).
# No `# syntax=` line: BuildKit would fetch that frontend from Docker Hub; the classic builder
# (DOCKER_BUILDKIT=0) and BuildKit both build this file as it is.
ARG BASE=node:24-bookworm-slim

# 1. Build: all dependencies, tsc (type-checks and emits dist/ with source maps), then drop the
#    dev dependencies (TypeScript, tsx, biome) so only production ones reach the runtime.
FROM ${BASE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf node_modules/.cache node_modules/.package-lock.json \
 && find node_modules -mindepth 1 -maxdepth 1 -type d -empty -delete

# 2. Runtime: dist/ and production node_modules, no sources and no TypeScript loader.
FROM ${BASE} AS runtime
# Stack traces name src/*.ts lines (dist/ carries the source maps). NODE_COMPILE_CACHE: V8's
# code cache, filled below at build time because the root filesystem is read-only at run time.
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps \
    NODE_COMPILE_CACHE=/app/.compile-cache
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
# The SPIFFE Workload API definition, loaded at run time by identity.workloadApi.
COPY proto ./proto
# Numeric UID/GID (the base's "node" user) so Kubernetes can enforce runAsNonRoot.
RUN mkdir /app/.compile-cache && chown 1000:1000 /app/.compile-cache
USER 1000:1000
# Fills the code cache (Node keys it by uid, hence as the image user) by loading every module of
# `serve`, `config validate` and `pki`: each command fails on the missing file after loading.
RUN node bin/egress-gateway.js config validate --config /nonexistent >/dev/null 2>&1; \
    node bin/egress-gateway.js pki inspect /nonexistent >/dev/null 2>&1; \
    test -n "$(ls -A /app/.compile-cache)"
# 3128: proxy listeners (configurable); 9901: admin API (/healthz, /readyz).
EXPOSE 3128 9901
ENTRYPOINT ["node", "bin/egress-gateway.js"]
CMD ["serve", "--config", "/etc/egress-gateway/gateway.yaml"]
