using static TorchSharp.torch;

namespace Elect.Modeling;

/// <summary>
/// One weight file a family reads, and which of its tensors it keeps (null: all). <paramref name="Root"/>: the entry
/// of a torch.save dict holding the tensors (e.g. a Lightning checkpoint's <c>state_dict</c>), null for the whole file.
/// </summary>
public sealed record WeightSource(string Path, Func<string, bool>? Include = null, string? Root = null);

/// <summary>
/// How much memory a model's weights take once loaded, from the files' headers only (safetensors headers, the pickle of
/// a torch.save file; no tensor data is read): every floating-point tensor at the model's dtype, every other tensor
/// at its stored size. A check before loading, so that a model larger than the free memory is refused with a line
/// instead of the operating system killing the process half-way through the load.
/// </summary>
public static class WeightFootprint
{
    /// <summary>The bytes of the tensors <paramref name="sources"/> select, at <paramref name="dtype"/>.</summary>
    public static long Bytes(IEnumerable<WeightSource> sources, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(sources);
        long target = TorchCheckpoint.ElementSize(dtype), total = 0;
        foreach (var s in sources)
            foreach (var (name, stored, shape) in WeightLoader.TensorHeaders(s.Path, s.Root, UnknownGlobals.Opaque))
                if (s.Include?.Invoke(name) ?? true)
                    total += Numel(shape) * ElementBytes(stored, target);
        return total;
    }

    private static long Numel(long[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    private static long ElementBytes(ScalarType stored, long target) =>
        stored is ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64 ? target : TorchCheckpoint.ElementSize(stored);

    /// <summary>"12.3 GB".</summary>
    public static string Gb(long bytes) => $"{bytes / 1e9:F1} GB";
}
