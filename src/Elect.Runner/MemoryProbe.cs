using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json.Serialization;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Runner;

/// <summary>One set of memory readings (MiB; <c>live_tensors</c>: a count). The GPU's only on CUDA, when NVML can be read.</summary>
public sealed record MemorySnapshot
{
    public double ProcessRssMib { get; init; }
    public double ManagedMib { get; init; }
    public long LiveTensors { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? GpuUsedMib { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public double? GpuTotalMib { get; init; }
}

/// <summary>The course of one reading over a sequence of snapshots; growth is last − first.</summary>
public sealed record ReadingTrend
{
    public double First { get; init; }
    public double Last { get; init; }
    public double Min { get; init; }
    public double Max { get; init; }
    public double Growth { get; init; }
}

/// <summary>The course of each reading of <see cref="MemorySnapshot"/> over <c>items</c> snapshots.</summary>
public sealed record MemoryTrend
{
    public int Items { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ReadingTrend? ProcessRssMib { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ReadingTrend? ManagedMib { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ReadingTrend? LiveTensors { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ReadingTrend? GpuUsedMib { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ReadingTrend? GpuTotalMib { get; init; }
}

/// <summary>
/// Memory readings for reports: the process's resident set, the managed heap, the number of live
/// TorchSharp tensors created on this thread (device-independent: a leak shows up as growth here
/// on any device) and, on CUDA, the device memory in use as NVML reports it (libnvidia-ml; absent →
/// omitted). TorchSharp exposes no caching-allocator statistics, so device memory is read from the
/// driver: it includes what the allocator keeps cached, i.e. it follows the peak, not the current use.
/// </summary>
public static class MemoryProbe
{
    public static MemorySnapshot Snapshot(Device device)
    {
        var o = new MemorySnapshot
        {
            ProcessRssMib = Math.Round(Environment.WorkingSet / 1048576.0, 1),
            ManagedMib = Math.Round(GC.GetTotalMemory(false) / 1048576.0, 1),
            LiveTensors = DisposeScopeManager.Statistics.ThreadTotalLiveCount,
        };
        if (device.type == DeviceType.CUDA && Nvml.TryUsedBytes(device.index < 0 ? 0 : device.index, out var used, out var total))
            o = o with { GpuUsedMib = Math.Round(used / 1048576.0, 1), GpuTotalMib = Math.Round(total / 1048576.0, 1) };
        return o;
    }

    /// <summary>
    /// The course of each reading over a sequence of snapshots (one per dataset item or bench run):
    /// <c>{reading: {first, last, min, max, growth}}</c>, where growth is last − first. Flat memory
    /// across items means growth ≈ 0 (the first item already holds the caches). A reading missing
    /// from some snapshot (the GPU's, where NVML could not be read) gets no trend.
    /// </summary>
    public static MemoryTrend Trend(IReadOnlyList<MemorySnapshot> snapshots)
    {
        ReadingTrend? Of(Func<MemorySnapshot, double?> reading)
        {
            var values = snapshots.Select(reading).ToArray();
            if (values.Length == 0 || values.Any(v => v is null)) return null;
            var v = values.Select(x => x!.Value).ToArray();
            return new ReadingTrend { First = v[0], Last = v[^1], Min = v.Min(), Max = v.Max(), Growth = Math.Round(v[^1] - v[0], 1) };
        }
        return new MemoryTrend
        {
            Items = snapshots.Count,
            ProcessRssMib = Of(s => s.ProcessRssMib),
            ManagedMib = Of(s => s.ManagedMib),
            LiveTensors = Of(s => s.LiveTensors),
            GpuUsedMib = Of(s => s.GpuUsedMib),
            GpuTotalMib = Of(s => s.GpuTotalMib),
        };
    }

    /// <summary>
    /// Memory free for a new allocation on <paramref name="device"/>: on CUDA the device's free memory as NVML
    /// reports it (memory the caching allocator holds counts as used); on the CPU the kernel's MemAvailable,
    /// capped by the cgroup's memory limit when one is set. Null when it cannot be read.
    /// </summary>
    /// <summary>What <see cref="AvailableBytes"/> measures, for messages: the CUDA device, or "the CPU (available RAM)".</summary>
    public static string AvailableName(Device device) => device.type == DeviceType.CUDA ? device.ToString() : "the CPU (available RAM)";

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
