# statsgate: build with the pinned lockfile, run as an unprivileged user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY config ./config
RUN cargo build --release --locked --bin statsgate

FROM debian:bookworm-slim
# The CA bundle: HTTPS to Keystone and Monasca verifies against it (the slim image has none).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin statsgate \
 && mkdir -p /var/lib/statsgate && chown statsgate /var/lib/statsgate && chmod 0700 /var/lib/statsgate
COPY --from=build /src/target/release/statsgate /usr/local/bin/statsgate
COPY config/statsgate.yaml /etc/statsgate/statsgate.yaml
# Inside a container the wildcard is the point; the published ports decide who reaches them.
# The spool and gauge checkpoint live on a volume, so outages and restarts lose nothing.
ENV STATSGATE_STATSD__LISTEN=0.0.0.0:8125 \
    STATSGATE_ADMIN__LISTEN=0.0.0.0:8126 \
    STATSGATE_BUFFER__SPOOL_DIR=/var/lib/statsgate
VOLUME /var/lib/statsgate
EXPOSE 8125/udp 8126/tcp
USER statsgate
HEALTHCHECK --interval=30s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8126 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '200 OK' <&3"]
ENTRYPOINT ["/usr/local/bin/statsgate", "--config", "/etc/statsgate/statsgate.yaml"]
CMD ["run"]
