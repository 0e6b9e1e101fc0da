# rmserve image. CPU by default; build with --build-arg DEVICE=cuda on a CUDA base to get the
# GPU runtime (onnxruntime-node's install step fetches its CUDA 12 binaries then).
ARG BASE=node:20-bookworm-slim
FROM ${BASE}
ARG DEVICE=cpu
WORKDIR /app
COPY package.json package-lock.json ./
RUN if [ "$DEVICE" = "cpu" ]; then export ONNXRUNTIME_NODE_INSTALL=skip; fi \
 && npm ci --omit=dev --no-audit --no-fund \
 && if [ "$DEVICE" = "cuda" ]; then npm rebuild onnxruntime-node --foreground-scripts; fi
COPY tsconfig.json ./
COPY bin ./bin
COPY src ./src
COPY models ./models
ENV HOST=0.0.0.0 PORT=8000 RMSERVE_MODELS=/app/models RMSERVE_DEVICE=${DEVICE}
EXPOSE 8000
USER node
# SIGTERM drains queued work before exit (see docs/operations.md).
CMD ["node", "--import", "tsx", "src/cli.ts", "serve"]
