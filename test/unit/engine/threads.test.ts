// Default math threads: physical cores (hyperthread siblings count once), within the CPU affinity
// and the container's CPU quota. Fake sysfs and cgroup trees stand in for machines of each kind.
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import t from "tap";
import { cgroupCpuLimit, defaultThreads, physicalCores } from "../../../src/engine/threads.js";

/** A sysfs tree with one CPU per [package, core] entry; `offline` CPUs are listed but offline. */
function sysfs(cpus: Array<[number, number]>, offline: number[] = []): string {
  const root = mkdtempSync(join(tmpdir(), "pasta-sysfs-"));
  cpus.forEach(([pkg, core], i) => {
    const dir = join(root, "devices", "system", "cpu", `cpu${i}`);
    mkdirSync(join(dir, "topology"), { recursive: true });
    writeFileSync(join(dir, "topology", "physical_package_id"), `${pkg}\n`);
    writeFileSync(join(dir, "topology", "core_id"), `${core}\n`);
    if (i > 0) writeFileSync(join(dir, "online"), offline.includes(i) ? "0\n" : "1\n");
  });
  mkdirSync(join(root, "devices", "system", "cpu", "cpufreq"), { recursive: true }); // not a CPU
  return root;
}

function cgroup(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "pasta-cgroup-"));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(root, name, ".."), { recursive: true });
    writeFileSync(join(root, name), content);
  }
  return root;
}

const noQuota = cgroup({ "cpu.max": "max 100000\n" });

t.test("hyperthread siblings count once; packages apart", async (t) => {
  const smt = sysfs([
    [0, 0],
    [0, 1],
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
    [1, 0],
    [1, 1],
  ]);
  t.equal(physicalCores(smt), 4);
  t.equal(defaultThreads({ sysfs: smt, cgroupRoot: noQuota, cpus: 8 }), 4);
  t.equal(
    physicalCores(
      sysfs(
        [
          [0, 0],
          [0, 1],
          [0, 2],
        ],
        [2],
      ),
    ),
    2,
    "offline CPUs do not count",
  );
});

t.test("a container's CPU quota caps the threads", async (t) => {
  const cores = sysfs(Array.from({ length: 16 }, (_, i) => [0, i] as [number, number]));
  t.equal(cgroupCpuLimit(cgroup({ "cpu.max": "150000 100000\n" })), 2, "1.5 CPUs: 2 threads");
  t.equal(defaultThreads({ sysfs: cores, cgroupRoot: cgroup({ "cpu.max": "400000 100000\n" }), cpus: 16 }), 4);
  t.equal(cgroupCpuLimit(cgroup({ "cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n" })), 3, "cgroup v1");
  t.equal(cgroupCpuLimit(cgroup({ "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n" })), undefined, "v1 unlimited");
  t.equal(cgroupCpuLimit(noQuota), undefined);
});

t.test("the CPU affinity caps the threads; without topology, half the CPUs beyond two", async (t) => {
  const cores = sysfs(Array.from({ length: 8 }, (_, i) => [0, i] as [number, number]));
  t.equal(defaultThreads({ sysfs: cores, cgroupRoot: noQuota, cpus: 3 }), 3);
  const none = join(tmpdir(), "pasta-no-sysfs-here");
  t.equal(physicalCores(none), undefined);
  t.equal(defaultThreads({ sysfs: none, cgroupRoot: noQuota, cpus: 8 }), 4);
  t.equal(defaultThreads({ sysfs: none, cgroupRoot: noQuota, cpus: 2 }), 2);
  t.equal(defaultThreads({ sysfs: none, cgroupRoot: noQuota, cpus: 1 }), 1);
});
