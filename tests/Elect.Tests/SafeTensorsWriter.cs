using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>Minimal safetensors writer for tests (CPU tensors; the dtypes SafeTensors reads).</summary>
public static class SafeTensorsWriter
{
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> tensors)
    {
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        var blobs = new List<byte[]>();
        long offset = 0;
        foreach (var (name, t) in tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            using var c = t.detach().cpu().contiguous();
            var bytes = c.numel() == 0 ? [] : c.bytes.ToArray();
            header[name] = new Dictionary<string, object>
            {
                ["dtype"] = DType(c.dtype),
                ["shape"] = c.shape,
                ["data_offsets"] = new[] { offset, offset + bytes.Length },
            };
            blobs.Add(bytes);
            offset += bytes.Length;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int pad = (8 - json.Length % 8) % 8;
        var headerBytes = json.Concat(Enumerable.Repeat((byte)' ', pad)).ToArray();
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((long)headerBytes.Length));
        fs.Write(headerBytes);
        foreach (var b in blobs) fs.Write(b);
    }

    private static string DType(ScalarType t) => t switch
    {
        ScalarType.Float64 => "F64",
        ScalarType.Float32 => "F32",
        ScalarType.Float16 => "F16",
        ScalarType.BFloat16 => "BF16",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Int16 => "I16",
        ScalarType.Int8 => "I8",
        ScalarType.Byte => "U8",
        ScalarType.Bool => "BOOL",
        _ => throw new NotSupportedException($"dtype {t}"),
    };
}
