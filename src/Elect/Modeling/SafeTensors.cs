using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Modeling;

/// <summary>One tensor's entry in a safetensors header.</summary>
public sealed record SafeTensorInfo(string Name, string DType, long[] Shape, long Begin, long End);

/// <summary>
/// Reader for the safetensors format (8-byte little-endian header length, JSON header, raw
/// little-endian data). Supports F64/F32/F16/BF16/I64/I32/I16/I8/U8/BOOL.
/// </summary>
public static class SafeTensors
{
    /// <summary>Reads the header of a safetensors file: the tensor entries and the data offset.</summary>
    public static (IReadOnlyList<SafeTensorInfo> Tensors, long DataOffset) ReadHeader(string path)
    {
        using var fs = File.OpenRead(path);
        return ReadHeader(fs, path);
    }

    private static (IReadOnlyList<SafeTensorInfo>, long) ReadHeader(FileStream fs, string path)
    {
        Span<byte> lenBytes = stackalloc byte[8];
        if (fs.Read(lenBytes) != 8)
            throw new InvalidDataException($"{path}: not a safetensors file (shorter than 8 bytes)");
        long n = BitConverter.ToInt64(lenBytes);
        if (n <= 1 || n > 100_000_000 || 8 + n > fs.Length)
            throw new InvalidDataException($"{path}: not a safetensors file (header length {n})");
        var header = new byte[n];
        fs.ReadExactly(header);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new InvalidDataException($"{path}: corrupt safetensors header ({e.Message})"); }
        var list = new List<SafeTensorInfo>();
        long dataLen = fs.Length - 8 - n;
        using (doc)
        {
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Name == "__metadata__") continue;
                var dtype = p.Value.GetProperty("dtype").GetString() ?? "";
                var shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                if (offs.Length != 2 || offs[0] < 0 || offs[1] < offs[0] || offs[1] > dataLen)
                    throw new InvalidDataException($"{path}: tensor '{p.Name}' has data offsets outside the file");
                long expected = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype, p.Name, path);
                if (expected != offs[1] - offs[0])
                    throw new InvalidDataException($"{path}: tensor '{p.Name}' has {offs[1] - offs[0]} bytes, its shape and dtype need {expected}");
                list.Add(new SafeTensorInfo(p.Name, dtype, shape, offs[0], offs[1]));
            }
        }
        return (list, 8 + n);
    }

    /// <summary>Maps a safetensors dtype string to a TorchSharp scalar type.</summary>
    public static ScalarType ToScalarType(string dtype, string name = "?", string path = "?") => dtype switch
    {
        "F64" => ScalarType.Float64,
        "F32" => ScalarType.Float32,
        "F16" => ScalarType.Float16,
        "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64,
        "I32" => ScalarType.Int32,
        "I16" => ScalarType.Int16,
        "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte,
        "BOOL" => ScalarType.Bool,
        _ => throw new InvalidDataException($"{path}: tensor '{name}' has unsupported dtype '{dtype}'"),
    };

    private static int ElementSize(string dtype, string name, string path) => ToScalarType(dtype, name, path) switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    /// <summary>
    /// Loads tensors of a safetensors file onto the CPU in their stored dtype. <paramref name="filter"/>
    /// selects names (null: all).
    /// </summary>
    public static Dictionary<string, Tensor> Load(string path, Func<string, bool>? filter = null)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        ForEach(path, (info, t) => result[info.Name] = t, filter);
        return result;
    }

    /// <summary>
    /// Streams the tensors of a file one at a time (CPU, stored dtype) to <paramref name="consume"/>,
    /// which owns the tensor. Peak memory is one tensor, not the file.
    /// </summary>
    public static void ForEach(string path, Action<SafeTensorInfo, Tensor> consume, Func<string, bool>? filter = null)
    {
        using var fs = File.OpenRead(path);
        var (infos, dataOffset) = ReadHeader(fs, path);
        byte[] buffer = [];
        foreach (var info in infos.OrderBy(i => i.Begin))
        {
            if (filter != null && !filter(info.Name)) continue;
            long len = info.End - info.Begin;
            if (len > int.MaxValue)
                throw new InvalidDataException($"{path}: tensor '{info.Name}' is larger than 2 GiB");
            if (buffer.Length < len) buffer = new byte[len];
            fs.Position = dataOffset + info.Begin;
            fs.ReadExactly(buffer, 0, (int)len);
            var t = torch.empty(info.Shape, ToScalarType(info.DType, info.Name, path));
            if (len > 0) t.bytes = buffer.AsSpan(0, (int)len);
            consume(info, t);
        }
    }

    /// <summary>The safetensors dtype string of a TorchSharp scalar type.</summary>
    public static string ToDTypeString(ScalarType t) => t switch
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
        _ => throw new NotSupportedException($"dtype {t} cannot be stored in safetensors"),
    };

    /// <summary>Writes tensors (any device; stored as they are) to a safetensors file, names sorted.</summary>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        var header = new Dictionary<string, object>();
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        var blobs = new List<byte[]>();
        foreach (var name in names)
        {
            using var t = tensors[name].detach().cpu().contiguous();
            var bytes = t.numel() == 0 ? [] : t.bytes.ToArray();
            header[name] = new Dictionary<string, object>
            {
                ["dtype"] = ToDTypeString(t.dtype),
                ["shape"] = t.shape,
                ["data_offsets"] = new[] { offset, offset + bytes.Length },
            };
            offset += bytes.Length;
            blobs.Add(bytes);
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        int pad = (8 - json.Length % 8) % 8;
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((long)(json.Length + pad)));
        fs.Write(json);
        for (int i = 0; i < pad; i++) fs.WriteByte((byte)' ');
        foreach (var b in blobs) fs.Write(b);
    }
}
