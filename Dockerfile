# staplerd container image. Build: docker build -t staplerd .
# Run:   docker run -d --name staplerd -p 127.0.0.1:8080:8080 \
#          -v /etc/ssl/staplerd:/etc/staplerd/certs:ro -v staplerd-data:/var/lib/staplerd staplerd
# The config is config/docker/staplerd.yaml (copied to /etc/staplerd/staplerd.yaml; mount your own there to
# change it). CI builds it with podman (.ci/image.sh) and runs what it builds (test/image/);
# test/packaging/files.test.ts checks that every path, port and command named here exists in the repository.

# --- build: dev dependencies, TypeScript compile, then drop the dev dependencies ---------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret:
#   docker build --secret id=ca,src=/path/to/ca-bundle.crt -t staplerd .
# It is mounted for this one step only: no layer and no image keeps the file or the variable.
RUN --mount=type=secret,id=ca,required=false \
    if [ -s /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi; \
    npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

# --- runtime: production dependencies and compiled JavaScript only -----------------------------------------
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
# The documented reference config and examples, for reading only:
#   docker run --rm --entrypoint cat staplerd /app/config/staplerd.yaml
COPY config ./config
COPY config/docker/staplerd.yaml /etc/staplerd/staplerd.yaml
# Certificates are mounted at /etc/staplerd/certs (an empty directory when nothing is mounted: staplerd then
# runs with zero certificates). Staples persist in the volume, writable by the unprivileged user.
# /var/lib/staplerd-demo is only for docker-compose.yml's demo CA (a fresh named volume takes this owner).
RUN mkdir -p /etc/staplerd/certs /var/lib/staplerd /var/lib/staplerd-demo && chown node:node /var/lib/staplerd /var/lib/staplerd-demo
VOLUME /var/lib/staplerd

# The `node` user (uid 1000) comes with the official image.
USER node
EXPOSE 8080
# Liveness only (/healthz); /readyz tells whether staples are held. No curl in the slim image: node asks.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form, no shell in between: SIGTERM from `docker stop` reaches staplerd, which stops gracefully
# (bounded at 15 s; give `docker stop -t 20` if the default 10 s is too short for your certificate count).
ENTRYPOINT ["node", "/app/dist/src/cli.js"]
CMD ["serve", "-c", "/etc/staplerd/staplerd.yaml"]
