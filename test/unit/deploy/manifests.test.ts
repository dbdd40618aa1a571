// docker/compose.yaml, the gateway template and k8s/ agree with each other, with the image
// (docker/Dockerfile) and with the server: settings the server accepts, ports, probes, grace periods
// longer than the drain, the template's placeholders all provided, limits and timeouts in step.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import t from "tap";
import YAML from "yaml";
import { parseServeConfig, SERVE_USAGE } from "../../../src/cli/config.js";
import {
  DOCKER_DIR,
  DOCKERFILE,
  GATEWAY_TEMPLATE,
  healthcheckCommand,
  parseDockerfile,
  readEnvFile,
  REPLICA_ENV_FILE,
  ROOT,
  stageEnv,
  templatePlaceholders,
} from "../../support/deployment.js";

/* eslint-disable @typescript-eslint/no-explicit-any */
const yamlFile = (...path: string[]): any => YAML.parse(readFileSync(join(ROOT, ...path), "utf8"), { merge: true });
const dockerfile = parseDockerfile(DOCKERFILE);
const imageEnv = stageEnv(dockerfile, Math.max(...dockerfile.map((i) => i.stage)));
const imageUser = dockerfile.filter((i) => i.keyword === "USER").at(-1)!.args;
/** The variables `serve` reads, as its --help lists them. */
const SERVE_VARIABLES = new Set(/come from the environment: (.*)\./.exec(SERVE_USAGE)![1]!.split(", "));
/** compose's ${NAME:-default}, with nothing set in the shell */
const interpolate = (v: string) => v.replace(/\$\{\w+:-([^}]*)\}/g, "$1");
const seconds = (v: string) => {
  const m = /^(\d+)(s|m)?$/.exec(v)!;
  return Number(m[1]) * (m[2] === "m" ? 60 : 1);
};

t.test("docker/pasta.env and the k8s ConfigMap are settings the server accepts", async (t) => {
  const configMap = yamlFile("k8s", "configmap.yaml").data as Record<string, string>;
  for (const [name, env] of [
    ["docker/pasta.env", readEnvFile(REPLICA_ENV_FILE)],
    ["k8s/configmap.yaml", configMap],
  ] as const) {
    for (const key of Object.keys(env)) t.ok(SERVE_VARIABLES.has(key), `${name}: ${key} is a serve variable`);
    t.doesNotThrow(() => parseServeConfig([], { ...imageEnv, ...env }), `${name}: valid for pasta-server serve`);
  }
});

t.test("docker/compose.yaml: replicas, gateway and template fit together", async (t) => {
  const compose = yamlFile("docker", "compose.yaml");
  const replicas = Object.entries(compose.services).filter(([name]) => /^pasta-\d+$/.test(name)) as Array<[string, any]>;
  t.ok(replicas.length >= 2, `${replicas.length} replicas`);
  const template = readFileSync(GATEWAY_TEMPLATE, "utf8");
  const gateway = compose.services.gateway;
  const placeholders = templatePlaceholders(template);
  t.same(
    Object.keys(gateway.environment)
      .filter((k) => k.startsWith("PASTA_GATEWAY_"))
      .sort(),
    placeholders.sort(),
    "the gateway's environment provides exactly the template's placeholders",
  );
  const filter = new RegExp(gateway.environment.NGINX_ENVSUBST_FILTER);
  t.ok(
    placeholders.every((p) => filter.test(p)),
    "NGINX_ENVSUBST_FILTER lets them through",
  );
  t.notOk(
    /\$(HOSTNAME|HOME|PATH|PWD|NGINX_\w+|PKG_RELEASE)\b/.test(template),
    "no variable of the nginx image's environment in the template",
  );
  t.ok(
    gateway.volumes.includes("./nginx.conf.template:/etc/nginx/templates/default.conf.template:ro"),
    "the template, rendered to conf.d/default.conf",
  );
  t.match(template, /include gateway-keys\.map;/);
  t.ok(
    gateway.volumes.includes("./gateway-keys.map:/etc/nginx/gateway-keys.map:ro"),
    "the keys map where the template's relative include finds it (/etc/nginx)",
  );

  const port = imageEnv.PASTA_PORT;
  const upstreams = placeholders.filter((p) => /REPLICA_\d+$/.test(p)).map((p) => gateway.environment[p]);
  t.same(upstreams.sort(), replicas.map(([name]) => `${name}:${port}`).sort(), "one upstream per replica, on the image's PASTA_PORT");
  t.equal(gateway.ports[0].split(":").at(-1), gateway.environment.PASTA_GATEWAY_LISTEN, "the published port is the one nginx listens on");
  for (const [name] of replicas) t.equal(gateway.depends_on[name].condition, "service_healthy", `waits for ${name}'s HEALTHCHECK`);

  for (const [name, replica] of replicas) {
    t.equal(replica.env_file, "pasta.env", `${name}: docker/pasta.env`);
    const env = {
      ...imageEnv,
      ...readEnvFile(join(DOCKER_DIR, replica.env_file)),
      ...Object.fromEntries(Object.entries(replica.environment).map(([k, v]) => [k, interpolate(String(v))])),
    };
    const config = parseServeConfig([], env);
    t.ok(config.model?.startsWith("/models/"), `${name}: the model from the volume`);
    t.ok(
      replica.volumes.some((v: string) => interpolate(v).endsWith(":/models")),
      `${name}: the models volume`,
    );
    t.ok(
      seconds(replica.stop_grace_period) > config["shutdown-timeout"],
      `${name}: stop_grace_period ${replica.stop_grace_period} > the drain (${config["shutdown-timeout"]} s)`,
    );
  }
});

t.test("the gateway's limits and timeouts match the replicas'", async (t) => {
  const template = readFileSync(GATEWAY_TEMPLATE, "utf8");
  const config = parseServeConfig([], { ...imageEnv, ...readEnvFile(REPLICA_ENV_FILE) });
  const directive = (name: string) => new RegExp(`^\\s*${name}\\s+([^;]+);`, "m").exec(template)![1]!;
  t.equal(
    Number(/^(\d+)m$/.exec(directive("client_max_body_size"))![1]) * 1024 * 1024,
    config["body-limit"],
    "client_max_body_size = the body limit",
  );
  t.ok(seconds(directive("proxy_read_timeout")) > config.timeout, "nginx waits for a reply longer than a replica's own time limit");
  t.ok(
    seconds(directive("keepalive_timeout")) < 72,
    "idle upstream connections close before Fastify's keepAliveTimeout (72 s) closes them",
  );
  t.equal(directive("proxy_buffering"), "off");
  t.notMatch(directive("proxy_next_upstream"), /non_idempotent/, "a POST that reached a replica is never replayed");
});

t.test("k8s/: probes, draining, names and the image agree", async (t) => {
  const files = readdirSync(join(ROOT, "k8s")).filter((f) => f.endsWith(".yaml"));
  const kustomization = yamlFile("k8s", "kustomization.yaml");
  t.same(
    [...kustomization.resources].sort(),
    files.filter((f) => f !== "kustomization.yaml").sort(),
    "kustomization.yaml lists every manifest",
  );

  const deployment = yamlFile("k8s", "deployment.yaml");
  const configMap = yamlFile("k8s", "configmap.yaml");
  const pod = deployment.spec.template.spec;
  const container = pod.containers[0];
  const config = parseServeConfig([], { ...imageEnv, ...configMap.data });
  t.same(container.ports, [{ name: "http", containerPort: config.port }], "the container port is PASTA_PORT");
  t.same(container.readinessProbe.httpGet, { path: "/ready", port: "http" }, "ready = model loaded, and not draining");
  t.match(healthcheckCommand(dockerfile).join(" "), /\/ready/, "as the image's HEALTHCHECK");
  t.same(container.livenessProbe.httpGet, { path: "/health", port: "http" }, "alive = listening");
  t.same(container.startupProbe.httpGet, { path: "/health", port: "http" });
  const preStop = container.lifecycle.preStop.exec.command;
  t.equal(preStop[0], "sleep", "preStop sleeps while the endpoints drain");
  t.ok(
    pod.terminationGracePeriodSeconds > Number(preStop[1]) + config["shutdown-timeout"],
    `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} > preStop ${preStop[1]} s + --shutdown-timeout ${config["shutdown-timeout"]} s`,
  );
  t.same(
    container.envFrom.map((e: any) => e.configMapRef?.name ?? e.secretRef?.name),
    [configMap.metadata.name, "pasta-server-api-keys"],
    "env from the ConfigMap and the API keys' Secret",
  );
  t.notOk(container.envFrom[1].secretRef.optional, "the keys' Secret is required: no replica serves open for want of it");
  t.equal(String(pod.securityContext.runAsUser), imageUser.split(":")[0], "runs as the image's user");
  t.equal(pod.securityContext.runAsNonRoot, true);

  const pvc = yamlFile("k8s", "pvc.yaml");
  const models = pod.volumes.find((v: any) => v.name === container.volumeMounts.find((m: any) => m.mountPath === "/models").name);
  t.equal(models.persistentVolumeClaim.claimName, pvc.metadata.name, "models from the PVC");

  const labels = deployment.spec.template.metadata.labels;
  const service = yamlFile("k8s", "service.yaml");
  t.ok(
    Object.entries(service.spec.selector).every(([k, v]) => labels[k] === v),
    "the Service selects the pods",
  );
  t.equal(service.spec.ports[0].targetPort, "http");
  const pdb = yamlFile("k8s", "pdb.yaml");
  t.ok(
    Object.entries(pdb.spec.selector.matchLabels).every(([k, v]) => labels[k] === v),
    "the PodDisruptionBudget too",
  );

  const hpa = yamlFile("k8s", "hpa.yaml");
  t.same(
    hpa.spec.scaleTargetRef,
    { apiVersion: "apps/v1", kind: "Deployment", name: deployment.metadata.name },
    "the HPA scales the Deployment",
  );
  t.equal(hpa.spec.metrics[0].resource.name, "cpu");
  t.ok(container.resources.requests.cpu, "CPU requests, which CPU utilization is measured against");
  t.match(readFileSync(join(ROOT, "k8s", "hpa.yaml"), "utf8"), /name: pasta_queue_depth/, "the queue-depth example");
  t.match(readFileSync(join(ROOT, "src", "server", "metrics.ts"), "utf8"), /name: "pasta_queue_depth"/, "a metric the server exports");
});
