# Stand-in for the official nginx:<version>-bookworm image: Debian's nginx, with what docker/compose.yaml
# relies on the official image for: /etc/nginx/templates/*.template rendered into /etc/nginx/conf.d/
# at start by envsubst (only the variables NGINX_ENVSUBST_FILTER matches, when set), the official
# nginx.conf (conf.d/*.conf included in http{}), logs to the container's stdout and stderr, nginx in
# the foreground, SIGQUIT to stop gracefully.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx gettext-base \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* /etc/nginx/conf.d/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log \
 && mkdir -p /etc/nginx/templates
COPY nginx.conf /etc/nginx/nginx.conf
COPY nginx-entrypoint.sh /docker-entrypoint.sh
EXPOSE 80
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
