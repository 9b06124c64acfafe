# Builds the `unity` binary (GraphiQL's assets embedded from web/) and ships it on a slim Debian.
FROM node:20-bookworm-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json web/.npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=web /src/web/node_modules web/node_modules
RUN cargo build --release --locked && cp target/release/unity /usr/local/bin/unity

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/unity --create-home unity
COPY --from=build /usr/local/bin/unity /usr/local/bin/unity
USER unity
ENV UNITY_BIND=0.0.0.0:8080 UNITY_MASTER_KEY_FILE=/var/lib/unity/master.key
EXPOSE 8080
ENTRYPOINT ["unity"]
CMD ["serve"]
