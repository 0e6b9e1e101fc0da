# syntax=docker/dockerfile:1
# rmserve, CPU image: `node dist/cli.js serve` (TypeScript compiled in the build stage; no tsx or
# dev dependencies in the image), non-root, with a HEALTHCHECK on /ready. The GPU image is
# Dockerfile.cuda. Build from the repository root:
#   docker build -t rmserve:0.1.0-cpu .
# docs/operations.md ("Deployment") has the run and Kubernetes instructions.

# Node 22 (maintenance LTS; a dependency, cookie 2, needs >= 22), pinned to a patch release.
ARG NODE_VERSION=22.23.5

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /src
# onnxruntime-node's install step would fetch its CUDA binaries; the CPU ones are in the package.
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
# --ignore-scripts: none is needed to compile (and npm 11 skips dependencies' scripts anyway).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:${NODE_VERSION}-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
# The default models; mount a models root over /app/models (or set RMSERVE_MODELS) for your own.
COPY models ./models
ENV HOST=0.0.0.0 PORT=8000 RMSERVE_MODELS=/app/models RMSERVE_DEVICE=cpu
EXPOSE 8000
# The image's `node` user, by number: Kubernetes' runAsNonRoot can only verify a numeric user.
USER 1000:1000
# Healthy once every model serves (/ready); the long start period covers loading large models
# (failures in it do not count). /health is the liveness check (the process is up).
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8000) + '/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM drains: queued and running requests are answered before exit (docs/operations.md).
STOPSIGNAL SIGTERM
CMD ["node", "dist/cli.js", "serve"]
