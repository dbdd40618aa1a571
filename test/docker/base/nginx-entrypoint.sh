#!/bin/sh
# What the official nginx image's /docker-entrypoint.sh does with 20-envsubst-on-templates.sh before it
# starts nginx: every /etc/nginx/templates/<name>.template becomes /etc/nginx/conf.d/<name>, with the
# ${VAR} of the environment variables substituted (only those NGINX_ENVSUBST_FILTER matches, if set).
set -eu
if [ "${1:-}" = "nginx" ] || [ "${1:-}" = "nginx-debug" ]; then
  template_dir="${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}"
  suffix="${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}"
  output_dir="${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}"
  filter="${NGINX_ENVSUBST_FILTER:-}"
  defined_envs=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" < /dev/null))
  for template in "$template_dir"/*"$suffix"; do
    [ -f "$template" ] || continue
    relative="${template#"$template_dir/"}"
    output="$output_dir/${relative%"$suffix"}"
    mkdir -p "$(dirname "$output")"
    echo "$0: Running envsubst on $template to $output"
    envsubst "$defined_envs" < "$template" > "$output"
  done
  echo "$0: Configuration complete; ready for start up"
fi
exec "$@"
