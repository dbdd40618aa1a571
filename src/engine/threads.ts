// How many math threads llama.cpp gets by default: one per physical core this process may use.
// Two threads on the two hyperthreads of one core, or more threads than a container's CPU quota,
// make llama.cpp's threads wait on each other at every barrier of every decode.
import { readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";

const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return undefined;
  }
};

/** Distinct (package, core) pairs among the online CPUs (Linux sysfs); undefined where unknown. */
export function physicalCores(sysfs = "/sys"): number | undefined {
  const cpuDir = join(sysfs, "devices", "system", "cpu");
  let entries: string[];
  try {
    entries = readdirSync(cpuDir).filter((name) => /^cpu\d+$/.test(name));
  } catch {
    return undefined;
  }
  const cores = new Set<string>();
  for (const cpu of entries) {
    if (read(join(cpuDir, cpu, "online")) === "0") continue;
    const core = read(join(cpuDir, cpu, "topology", "core_id"));
    const pkg = read(join(cpuDir, cpu, "topology", "physical_package_id"));
    if (core === undefined || pkg === undefined) return undefined;
    cores.add(`${pkg}:${core}`);
  }
  return cores.size > 0 ? cores.size : undefined;
}

/** The CPU quota of this process's cgroup (v2 `cpu.max`, or v1 `cpu.cfs_*`), rounded up; undefined if none. */
export function cgroupCpuLimit(cgroupRoot = "/sys/fs/cgroup"): number | undefined {
  const quota = (limit: number, period: number) => (limit > 0 && period > 0 ? Math.max(1, Math.ceil(limit / period)) : undefined);
  const v2 = read(join(cgroupRoot, "cpu.max"));
  if (v2 !== undefined) {
    const [limit, period] = v2.split(/\s+/);
    return limit === "max" ? undefined : quota(Number(limit), Number(period));
  }
  const v1Limit = read(join(cgroupRoot, "cpu", "cpu.cfs_quota_us")) ?? read(join(cgroupRoot, "cpu.cfs_quota_us"));
  const v1Period = read(join(cgroupRoot, "cpu", "cpu.cfs_period_us")) ?? read(join(cgroupRoot, "cpu.cfs_period_us"));
  return v1Limit !== undefined && v1Period !== undefined ? quota(Number(v1Limit), Number(v1Period)) : undefined;
}

/**
 * Physical cores, at most the CPUs this process may run on (affinity) and its container's CPU quota.
 * Without topology information, half the CPUs when there are more than two (assuming SMT).
 */
export function defaultThreads(options: { sysfs?: string; cgroupRoot?: string; cpus?: number } = {}): number {
  const cpus = options.cpus ?? os.availableParallelism();
  const cores = physicalCores(options.sysfs) ?? (cpus > 2 ? Math.floor(cpus / 2) : cpus);
  return Math.max(1, Math.min(cores, cpus, cgroupCpuLimit(options.cgroupRoot) ?? Infinity));
}
