# Sourced by tests/remote/run.sh and bench/remote/run.sh: start SeaweedFS (S3 API) and nginx on
# 127.0.0.1 only, on free ports, and stop them by their own process ids (never left running).
# Needs scripts/setup-store.sh to have run (weed in the venv, nginx from Debian).
#   mqkv_store_start DIR   -> exports AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
#                             AWS_REGION, MQKV_S3_PORT; creates bucket "mqkv"
#   mqkv_nginx_start DIR   -> serves DIR/www on MQKV_HTTP_URL
#   mqkv_servers_stop      -> kills both (also run from an EXIT trap)

MQKV_WEED_PID="" MQKV_NGINX_PID=""

# N free TCP ports on 127.0.0.1 whose port+10000 is free too (SeaweedFS puts gRPC there unless told).
mqkv_free_ports() {
  "$MQKV_PY" - "$1" <<'PY'
import socket, sys
n, out, held = int(sys.argv[1]), [], []
while len(out) < n:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p + 10000 > 65535: s.close(); continue
    t = socket.socket()
    try: t.bind(("127.0.0.1", p + 10000))
    except OSError: s.close(); t.close(); continue
    held += [s, t]; out.append(p)
print(" ".join(map(str, out)))
PY
}

mqkv_store_start() {
  local dir=$1 ports master volume filer s3 i
  mkdir -p "$dir/weed"
  read -r master volume filer s3 <<<"$(mqkv_free_ports 4)"
  cat >"$dir/identities.json" <<JSON
{"identities":[{"name":"mqkv-test","credentials":[{"accessKey":"mqkvtestkey","secretKey":"mqkvtestsecret"}],
 "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  "$MQKV_VENV/bin/weed" server -dir="$dir/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -master.port="$master" -master.port.grpc=$((master + 10000)) -volume.port="$volume" \
    -volume.port.grpc=$((volume + 10000)) -filer.port="$filer" -filer.port.grpc=$((filer + 10000)) \
    -s3 -s3.port="$s3" -s3.port.grpc=$((s3 + 10000)) -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$dir/identities.json" -volume.max=8 >"$dir/weed.log" 2>&1 &
  MQKV_WEED_PID=$!
  export AWS_ENDPOINT_URL="http://127.0.0.1:$s3" AWS_ACCESS_KEY_ID=mqkvtestkey AWS_SECRET_ACCESS_KEY=mqkvtestsecret
  export AWS_REGION=us-east-1 MQKV_S3_PORT=$s3
  unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3 MQKV_S3_ADDRESSING
  for i in $(seq 1 120); do
    kill -0 "$MQKV_WEED_PID" 2>/dev/null || { echo "SeaweedFS exited at start; its log:" >&2; tail -20 "$dir/weed.log" >&2; return 1; }
    # the bucket is made once the S3 gateway and a volume answer
    if [ "$(mqkv_s3_curl -X PUT -o /dev/null -w '%{http_code}' "$AWS_ENDPOINT_URL/mqkv")" = 200 ]; then
      echo "SeaweedFS S3 on 127.0.0.1:$s3 (pid $MQKV_WEED_PID), bucket mqkv" >&2
      return 0
    fi
    sleep 0.5
  done
  echo "SeaweedFS did not answer on 127.0.0.1:$s3 within 60 s; its log:" >&2
  tail -20 "$dir/weed.log" >&2
  return 1
}

# curl signed with the test identity (test set-up and checks only; the library signs through libcurl).
mqkv_s3_curl() {
  curl -s --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@"
}

mqkv_nginx_start() {
  local dir=$1 port
  port=$(mqkv_free_ports 1)
  mkdir -p "$dir/www" "$dir/nginx"
  chmod 755 "$dir" "$dir/www"  # nginx workers run as nobody
  cat >"$dir/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $dir/nginx/body; proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fcgi; uwsgi_temp_path $dir/nginx/uwsgi; scgi_temp_path $dir/nginx/scgi;
  server { listen 127.0.0.1:$port; root $dir/www; }
}
CONF
  /usr/sbin/nginx -p "$dir/nginx" -e "$dir/nginx/error.log" -c "$dir/nginx/nginx.conf" &
  MQKV_NGINX_PID=$!
  export MQKV_HTTP_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 50); do
    curl -s -o /dev/null "$MQKV_HTTP_URL/" && { echo "nginx on 127.0.0.1:$port (pid $MQKV_NGINX_PID)" >&2; return 0; }
    sleep 0.1
  done
  echo "nginx did not answer on 127.0.0.1:$port" >&2
  return 1
}

mqkv_servers_stop() {
  local p
  for p in $MQKV_WEED_PID $MQKV_NGINX_PID; do
    kill "$p" 2>/dev/null || true
  done
  for p in $MQKV_WEED_PID $MQKV_NGINX_PID; do
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  MQKV_WEED_PID="" MQKV_NGINX_PID=""
}
