using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Runner;

/// <summary>
/// Memory readings for reports: the process's resident set, the managed heap, the number of live
/// TorchSharp tensors created on this thread (device-independent: a leak shows up as growth here
/// on any device) and, on CUDA, the device memory in use as NVML reports it (libnvidia-ml; absent →
/// omitted). TorchSharp exposes no caching-allocator statistics, so device memory is read from the
/// driver: it includes what the allocator keeps cached, i.e. it follows the peak, not the current use.
/// </summary>
public static class MemoryProbe
{
    public static JsonObject Snapshot(Device device)
    {
        var o = new JsonObject
        {
            ["process_rss_mib"] = Math.Round(Environment.WorkingSet / 1048576.0, 1),
            ["managed_mib"] = Math.Round(GC.GetTotalMemory(false) / 1048576.0, 1),
            ["live_tensors"] = DisposeScopeManager.Statistics.ThreadTotalLiveCount,
        };
        if (device.type == DeviceType.CUDA && Nvml.TryUsedBytes(device.index < 0 ? 0 : device.index, out var used, out var total))
        {
            o["gpu_used_mib"] = Math.Round(used / 1048576.0, 1);
            o["gpu_total_mib"] = Math.Round(total / 1048576.0, 1);
        }
        return o;
    }

    /// <summary>
    /// The course of each reading over a sequence of snapshots (one per dataset item or bench run):
    /// <c>{reading: {first, last, min, max, growth}}</c>, where growth is last − first. Flat memory
    /// across items means growth ≈ 0 (the first item already holds the caches).
    /// </summary>
    public static JsonObject Trend(IReadOnlyList<JsonObject> snapshots)
    {
        var trend = new JsonObject { ["items"] = snapshots.Count };
        if (snapshots.Count == 0) return trend;
        foreach (var key in snapshots[0].Select(kv => kv.Key))
        {
            var values = snapshots.Select(s => Number(s[key])).Where(d => d.HasValue).Select(d => d!.Value).ToArray();
            if (values.Length != snapshots.Count) continue;   // a reading missing from some items
            trend[key] = new JsonObject
            {
                ["first"] = values[0],
                ["last"] = values[^1],
                ["min"] = values.Min(),
                ["max"] = values.Max(),
                ["growth"] = Math.Round(values[^1] - values[0], 1),
            };
        }
        return trend;
    }

    private static double? Number(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number ? double.Parse(v.ToJsonString(), CultureInfo.InvariantCulture) : null;

    /// <summary>
    /// Memory free for a new allocation on <paramref name="device"/>: on CUDA the device's free memory as NVML
    /// reports it (memory the caching allocator holds counts as used); on the CPU the kernel's MemAvailable,
    /// capped by the cgroup's memory limit when one is set. Null when it cannot be read.
    /// </summary>
    public static long? AvailableBytes(Device device)
    {
        if (device.type == DeviceType.CUDA)
            return Nvml.TryMemory(device.index < 0 ? 0 : device.index, out var info) ? (long)info.Free : null;
        long? available = null;
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var kib))
                        available = kib * 1024;
                    break;
                }
            var max = "/sys/fs/cgroup/memory.max";
            var current = "/sys/fs/cgroup/memory.current";
            if (File.Exists(max) && File.Exists(current)
                && long.TryParse(File.ReadAllText(max).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var limit)
                && long.TryParse(File.ReadAllText(current).Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var used))
                available = Math.Min(available ?? long.MaxValue, Math.Max(0, limit - used));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return available;
    }

    /// <summary>The GPU's name via NVML, or null.</summary>
    public static string? GpuName(int index) => Nvml.TryName(index, out var name) ? name : null;

    private static class Nvml
    {
        [DllImport("libnvidia-ml.so.1", EntryPoint = "nvmlDeviceGetName")]
        private static extern int GetName(IntPtr device, byte[] name, uint length);

        public static bool TryName(int index, out string name)
        {
            name = "";
            try
            {
                _ok ??= Init() == 0;
                var buffer = new byte[96];
                if (_ok != true || GetHandle((uint)index, out var h) != 0 || GetName(h, buffer, (uint)buffer.Length) != 0) return false;
                name = System.Text.Encoding.ASCII.GetString(buffer).TrimEnd('\0');
                return true;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                _ok = false;
                return false;
            }
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct MemoryInfo { public ulong Total, Free, Used; }

        [DllImport("libnvidia-ml.so.1", EntryPoint = "nvmlInit_v2")]
        private static extern int Init();

        [DllImport("libnvidia-ml.so.1", EntryPoint = "nvmlDeviceGetHandleByIndex_v2")]
        private static extern int GetHandle(uint index, out IntPtr device);

        [DllImport("libnvidia-ml.so.1", EntryPoint = "nvmlDeviceGetMemoryInfo")]
        private static extern int GetMemoryInfo(IntPtr device, out MemoryInfo info);

        private static bool? _ok;

        public static bool TryUsedBytes(int index, out long used, out long total)
        {
            used = total = 0;
            if (!TryMemory(index, out var info)) return false;
            used = (long)info.Used;
            total = (long)info.Total;
            return true;
        }

        public static bool TryMemory(int index, out MemoryInfo info)
        {
            info = default;
            try
            {
                _ok ??= Init() == 0;
                return _ok == true && GetHandle((uint)index, out var h) == 0 && GetMemoryInfo(h, out info) == 0;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                _ok = false;
                return false;
            }
        }
    }
}
