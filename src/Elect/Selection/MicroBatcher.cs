using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Elect.Selection;

/// <summary>
/// Runs a row-wise computation over n rows (candidates) in chunks of at most <see cref="Size"/> rows; a CUDA
/// out-of-memory halves the chunk, remembers it for later calls, and retries. The engine uses one for model
/// calls and one for VAE decodes.
/// </summary>
internal sealed class MicroBatcher(Action<long, int> onRetry)
{
    /// <summary>The largest chunk (null: all rows at once).</summary>
    public int? Size { get; set; }

    /// <summary>
    /// <paramref name="chunk"/>(start, length) for consecutive chunks, each returning the same number of tensors
    /// (rows along dim 0); returns them concatenated, owned by the caller's dispose scope.
    /// </summary>
    public Tensor[] Map(long n, Func<long, long, Tensor[]> chunk)
    {
        while (true)
        {
            long size = Math.Min(n, Size ?? n);
            // each attempt owns its tensors, so a failed (out-of-memory) attempt frees them before the retry
            using var attempt = NewDisposeScope();
            try
            {
                var parts = new List<Tensor[]>();
                for (long start = 0; start < n; start += size)
                    parts.Add(chunk(start, Math.Min(size, n - start)));
                var outputs = new Tensor[parts[0].Length];
                for (int k = 0; k < outputs.Length; k++)
                    outputs[k] = (parts.Count == 1 ? parts[0][k] : cat(parts.Select(p => p[k]).ToArray(), 0)).MoveToOuterDisposeScope();
                return outputs;
            }
            catch (Exception e) when (IsOutOfMemory(e) && size > 1)
            {
                Size = (int)Math.Max(1, size / 2);
                onRetry(size, Size.Value);
                GC.Collect();
            }
        }
    }

    public static bool IsOutOfMemory(Exception e) =>
        e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase);
}
