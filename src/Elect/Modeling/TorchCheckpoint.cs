using System.IO.Compression;
using System.Numerics;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("Elect.Tests")]

namespace Elect.Modeling;

/// <summary>A storage of a torch.save archive (<c>&lt;archive&gt;/data/&lt;key&gt;</c>), not read yet.</summary>
public sealed record TorchStorageRef(string Key, string TypeName, ScalarType DType, long Numel, string Location);

/// <summary>
/// A tensor of a torch.save checkpoint, not read yet: a strided view (<see cref="StorageOffset"/>,
/// <see cref="Shape"/>, <see cref="Stride"/>, in elements of <see cref="DType"/>) into a storage
/// that other tensors may share.
/// </summary>
public sealed class TorchTensorRef
{
    public required TorchStorageRef Storage { get; init; }
    public required ScalarType DType { get; init; }
    public required long StorageOffset { get; init; }
    public required long[] Shape { get; init; }
    public required long[] Stride { get; init; }
    public bool RequiresGrad { get; init; }

    /// <summary>Rebuilt as an <c>nn.Parameter</c>.</summary>
    public bool IsParameter { get; init; }

    /// <summary>Python attributes restored by BUILD (ignored).</summary>
    public object? PythonState { get; set; }

    public long Numel => Shape.Aggregate(1L, (a, b) => a * b);

    public override string ToString() => $"tensor({DType}, [{string.Join(", ", Shape)}])";
}

/// <summary>
/// A PyTorch checkpoint written by <c>torch.save</c> (the zip format of torch &gt;= 1.6:
/// <c>&lt;folder&gt;/data.pkl</c>, <c>&lt;folder&gt;/data/&lt;key&gt;</c> raw little-endian storages,
/// <c>&lt;folder&gt;/byteorder</c>), read like <c>torch.load(weights_only=True)</c>: the pickle is
/// rebuilt by a restricted reader that allows only tensors, torch's own rebuild functions,
/// dtypes, sizes and plain containers, and refuses every other global by name. Nothing in the
/// file is ever executed. Storages stay in the file until a tensor is asked for; each is read
/// straight into tensor memory, once.
/// </summary>
public sealed class TorchCheckpoint : IDisposable
{
    private readonly FileStream _file;
    private readonly ZipArchive _zip;
    private readonly string _prefix;
    private readonly Dictionary<(string, ScalarType), Tensor> _storages = [];

    /// <summary>Bytes read per step into a storage (tests shrink it to exercise chunking).</summary>
    internal static int ReadChunkBytes = 64 << 20;

    private TorchCheckpoint(string path, FileStream file, ZipArchive zip, string prefix)
    {
        Path = path;
        _file = file;
        _zip = zip;
        _prefix = prefix;
    }

    /// <summary>The checkpoint file.</summary>
    public string Path { get; }

    /// <summary>
    /// The unpickled object: <see cref="PickleDict"/> (dict, OrderedDict), <c>List&lt;object?&gt;</c>,
    /// <see cref="PickleTuple"/>, <see cref="PickleSet"/>, <c>long</c> / <see cref="BigInteger"/>,
    /// <c>double</c>, <c>string</c>, <c>byte[]</c>, <c>bool</c>, null, <see cref="TorchDType"/>,
    /// <see cref="TorchTensorRef"/>, and with <see cref="UnknownGlobals.Opaque"/> also <see cref="PickleObject"/>.
    /// </summary>
    public object? Root { get; private set; }

    /// <summary>
    /// Opens a torch.save zip checkpoint and unpickles its <c>data.pkl</c> (storages are read later).
    /// Throws <see cref="InvalidDataException"/>: for a global outside the allow-list (naming it;
    /// see <see cref="UnsafePickle.GlobalOf"/>), a legacy (pre-1.6) or TorchScript file, or a corrupt one.
    /// </summary>
    public static TorchCheckpoint Open(string path, UnknownGlobals unknownGlobals = UnknownGlobals.Refuse)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"missing checkpoint {path}", path);
        var file = File.OpenRead(path);
        try
        {
            Span<byte> magic = stackalloc byte[4];
            int got = file.Read(magic);
            file.Position = 0;
            if (got < 4 || magic[0] != (byte)'P' || magic[1] != (byte)'K')
                throw NonZipError(path, file, unknownGlobals);
            ZipArchive zip;
            try { zip = new ZipArchive(file, ZipArchiveMode.Read, leaveOpen: true); }
            catch (InvalidDataException e) { throw new InvalidDataException($"{path}: not a readable zip archive ({e.Message})"); }
            try
            {
                var ckpt = new TorchCheckpoint(path, file, zip, FindPrefix(path, zip));
                ckpt.Root = ckpt.Unpickle(unknownGlobals);
                return ckpt;
            }
            catch
            {
                zip.Dispose();
                throw;
            }
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    private static string FindPrefix(string path, ZipArchive zip)
    {
        var pkls = zip.Entries.Where(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal)
                                          && e.FullName.IndexOf('/') == e.FullName.Length - "/data.pkl".Length).ToList();
        if (pkls.Count == 1)
        {
            var prefix = pkls[0].FullName[..^"data.pkl".Length];
            if (zip.GetEntry(prefix + "constants.pkl") != null)
                throw new InvalidDataException($"{path}: a TorchScript archive (torch.jit.save), not a torch.save checkpoint; save its state_dict() with torch.save");
            return prefix;
        }
        if (pkls.Count > 1)
            throw new InvalidDataException($"{path}: several top-level folders with a data.pkl ({string.Join(", ", pkls.Select(p => p.FullName))}); a torch.save archive has one");
        if (zip.Entries.Any(e => e.FullName.EndsWith("/constants.pkl", StringComparison.Ordinal) || e.FullName.Contains("/code/", StringComparison.Ordinal)))
            throw new InvalidDataException($"{path}: a TorchScript archive (torch.jit.save), not a torch.save checkpoint; save its state_dict() with torch.save");
        throw new InvalidDataException($"{path}: a zip archive without <folder>/data.pkl, not a torch.save checkpoint");
    }

    // Not a zip: a legacy torch.save file (a pickled magic number first) or some other pickle.
    private static InvalidDataException NonZipError(string path, FileStream file, UnknownGlobals unknownGlobals)
    {
        // the legacy magic number is the first few bytes; a hostile pickle names its globals early
        long n = Math.Min(file.Length, 4L << 20);
        var bytes = new byte[n];
        file.ReadExactly(bytes);
        object? first;
        try
        {
            var allowed = new Allowlist(path, unknownGlobals);
            first = new RestrictedUnpickler(bytes, path,
                pid => throw new InvalidDataException($"{path}: not a torch.save zip archive (a plain pickle with persistent ids)"),
                allowed.Resolve, allowed.CallWithoutTensors).Load();
        }
        catch (InvalidDataException e) when (UnsafePickle.GlobalOf(e) is null)
        {
            return new InvalidDataException($"{path}: neither a torch.save zip archive nor a readable pickle ({e.Message})");
        }
        if (first is BigInteger magic && magic == LegacyMagic)
            return new InvalidDataException($"{path}: legacy torch.save format (before torch 1.6, not a zip archive): re-save with torch>=1.6 (torch.save(torch.load(f), f2))");
        return new InvalidDataException($"{path}: a plain pickle ({PickleFormat.TypeOf(first)}), not a torch.save zip archive");
    }

    /// <summary>Unpickles a plain (non-torch) pickle file with the same allow-list; no tensor can be built.</summary>
    internal static object? LoadPlainPickle(string path, UnknownGlobals unknownGlobals = UnknownGlobals.Refuse)
    {
        var bytes = File.ReadAllBytes(path);
        var allowed = new Allowlist(path, unknownGlobals);
        return new RestrictedUnpickler(bytes, path,
            pid => throw new InvalidDataException($"{path}: persistent id {PickleFormat.Repr(pid)} outside a torch.save archive"),
            allowed.Resolve, allowed.CallWithoutTensors).Load();
    }

    private static readonly BigInteger LegacyMagic = BigInteger.Parse("1950a86a20f9469cfc6c", System.Globalization.NumberStyles.HexNumber);

    private object? Unpickle(UnknownGlobals unknownGlobals)
    {
        var byteorder = _zip.GetEntry(_prefix + "byteorder");
        if (byteorder != null)
        {
            using var r = new StreamReader(byteorder.Open(), Encoding.ASCII);
            var order = r.ReadToEnd().Trim();
            if (order != "little")
                throw new InvalidDataException($"{Path}: storages are stored {order}-endian; only little-endian checkpoints are supported");
        }
        var pklEntry = _zip.GetEntry(_prefix + "data.pkl")!;
        if (pklEntry.Length > int.MaxValue) throw new InvalidDataException($"{Path}: data.pkl is larger than 2 GiB");
        var pkl = new byte[pklEntry.Length];
        using (var s = pklEntry.Open()) s.ReadExactly(pkl);
        var allowed = new Allowlist(Path, unknownGlobals);
        var storages = new Dictionary<string, TorchStorageRef>(StringComparer.Ordinal);
        return new RestrictedUnpickler(pkl, $"{Path} (data.pkl)", pid => PersistentLoad(pid, storages), allowed.Resolve, allowed.Call).Load();
    }

    private TorchStorageRef PersistentLoad(object? pid, Dictionary<string, TorchStorageRef> storages)
    {
        if (pid is not PickleTuple { Count: >= 5 } t || Ascii(t[0]) != "storage")
            throw new InvalidDataException($"{Path}: only torch storages may be persistent ids, found {PickleFormat.Repr(pid)}");
        if (t[1] is not TorchStorageType type)
            throw new InvalidDataException($"{Path}: storage persistent id names {PickleFormat.Repr(t[1])}, not a storage type");
        if (type.DType is not ScalarType dtype)
            throw new InvalidDataException($"{Path}: storage type {type.Name} is not supported");
        var key = Ascii(t[2]) ?? throw new InvalidDataException($"{Path}: storage key {PickleFormat.Repr(t[2])} is not a string");
        var location = Ascii(t[3]) ?? "cpu";
        if (t[4] is not long numel || numel < 0) throw new InvalidDataException($"{Path}: storage '{key}' has element count {PickleFormat.Repr(t[4])}");
        if (storages.TryGetValue(key, out var known)) return known;
        var entry = _zip.GetEntry(_prefix + "data/" + key)
                    ?? throw new InvalidDataException($"{Path}: storage '{key}' is named by data.pkl but {_prefix}data/{key} is missing");
        long expected = numel * ElementSize(dtype);
        if (entry.Length != expected)
            throw new InvalidDataException($"{Path}: storage '{key}' ({type.Name}) holds {entry.Length} bytes, {numel} elements need {expected}");
        var s = new TorchStorageRef(key, type.Name, dtype, numel, location);
        storages[key] = s;
        return s;
    }

    private static string? Ascii(object? o) => o switch
    {
        string s => s,
        byte[] b => Encoding.ASCII.GetString(b),
        _ => null,
    };

    internal static int ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 or ScalarType.ComplexFloat32 => 8,
        ScalarType.ComplexFloat64 => 16,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        ScalarType.Int8 or ScalarType.Byte or ScalarType.Bool => 1,
        _ => throw new NotSupportedException($"dtype {t}"),
    };

    /// <summary>
    /// Reads <paramref name="t"/> (CPU, stored dtype): a view into its storage with the stored
    /// offset and strides, as torch.load gives it (tensors sharing a storage share memory). The
    /// caller owns the returned tensor.
    /// </summary>
    public Tensor Read(TorchTensorRef t)
    {
        var storage = StorageTensor(t.Storage, t.DType);
        return storage.as_strided(t.Shape, t.Stride, t.StorageOffset);
    }

    private Tensor StorageTensor(TorchStorageRef s, ScalarType dtype)
    {
        if (_storages.TryGetValue((s.Key, dtype), out var cached)) return cached;
        var entry = _zip.GetEntry(_prefix + "data/" + s.Key)!;
        int elem = ElementSize(dtype);
        if (entry.Length % elem != 0)
            throw new InvalidDataException($"{Path}: storage '{s.Key}' has {entry.Length} bytes, not a whole number of {dtype} elements");
        long numel = entry.Length / elem;
        var t = torch.empty(numel, dtype);
        t.DetachFromDisposeScope(); // cached: freed by Release/Dispose, views keep the memory alive as needed
        try
        {
            using var stream = entry.Open();
            long chunk = Math.Max(1, ReadChunkBytes / elem);
            for (long done = 0; done < numel; done += chunk)
            {
                using var view = t.narrow(0, done, Math.Min(chunk, numel - done));
                stream.ReadExactly(view.bytes);
            }
        }
        catch (Exception e) when (e is EndOfStreamException or InvalidDataException)
        {
            t.Dispose();
            throw new InvalidDataException($"{Path}: storage '{s.Key}' cannot be read ({e.Message})");
        }
        _storages[(s.Key, dtype)] = t;
        return t;
    }

    private void Release(TorchStorageRef s, ScalarType dtype)
    {
        if (_storages.Remove((s.Key, dtype), out var t)) t.Dispose();
    }

    /// <summary>
    /// The tensors under <paramref name="root"/> (null: the whole object; else dict keys separated
    /// by '/', e.g. <c>state_dict</c>), nested dicts flattened with '.' as in a state_dict.
    /// Non-tensor leaves (numbers, strings, lists, ...) are listed in <paramref name="skipped"/>;
    /// an opaque object (<see cref="UnknownGlobals.Opaque"/>) under the root is an error naming it.
    /// </summary>
    public IReadOnlyList<KeyValuePair<string, TorchTensorRef>> TensorEntries(string? root = null, List<string>? skipped = null)
    {
        var node = Select(root);
        var result = new List<KeyValuePair<string, TorchTensorRef>>();
        if (node is TorchTensorRef single) { result.Add(new(root ?? "", single)); return result; }
        if (node is not PickleDict dict)
            throw new InvalidDataException($"{Path}: {(root is null ? "the checkpoint" : $"'{root}'")} is a {PickleFormat.TypeOf(node)}, not a dict of tensors");
        Flatten(dict, "", result, skipped);
        return result;
    }

    private object? Select(string? root)
    {
        object? node = Root;
        if (string.IsNullOrEmpty(root)) return node;
        string walked = "";
        foreach (var part in root.Split('/'))
        {
            if (node is not PickleDict d || !d.TryGetValue(part, out node))
            {
                var keys = node is PickleDict here ? string.Join(", ", here.Keys.Take(10).Select(PickleFormat.Repr)) : "";
                throw new KeyNotFoundException($"{Path}: no entry '{(walked.Length > 0 ? walked + "/" : "")}{part}' (keys{(walked.Length > 0 ? $" of '{walked}'" : "")}: {keys})");
            }
            walked = walked.Length > 0 ? walked + "/" + part : part;
        }
        return node;
    }

    private void Flatten(PickleDict dict, string prefix, List<KeyValuePair<string, TorchTensorRef>> result, List<string>? skipped)
    {
        foreach (var (k, v) in dict)
        {
            if (k is not string key)
            {
                skipped?.Add($"{prefix}{PickleFormat.Repr(k)}");
                continue;
            }
            var name = prefix + key;
            switch (v)
            {
                case TorchTensorRef t: result.Add(new(name, t)); break;
                case PickleDict nested: Flatten(nested, name + ".", result, skipped); break;
                case PickleObject o:
                    throw UnsafePickle.Refuse($"{Path}: entry '{name}' is an object of the unknown class '{o.Type.FullName}' (kept opaque, never instantiated); read the tensors of another entry", o.Type.FullName);
                default: skipped?.Add(name); break;
            }
        }
    }

    /// <summary>
    /// Streams the tensors under <paramref name="root"/> (see <see cref="TensorEntries"/>) to
    /// <paramref name="consume"/>, which owns each tensor (CPU, stored dtype). Every storage is
    /// read once and freed after its last tensor, so peak memory is about one storage.
    /// </summary>
    public void ForEachTensor(string? root, Action<string, Tensor> consume, List<string>? skipped = null)
    {
        var entries = TensorEntries(root, skipped);
        // group tensors of one storage together, in order of first use
        var order = entries.Select((e, i) => (e, i)).GroupBy(x => (x.e.Value.Storage.Key, x.e.Value.DType))
                           .OrderBy(g => g.Min(x => x.i)).ToList();
        foreach (var group in order)
        {
            try
            {
                foreach (var (e, _) in group) consume(e.Key, Read(e.Value));
            }
            finally
            {
                Release(group.First().e.Value.Storage, group.Key.DType);
            }
        }
    }

    /// <summary>Reads every tensor under <paramref name="root"/> into a name -> tensor map (CPU, stored dtype).</summary>
    public Dictionary<string, Tensor> ReadTensors(string? root = null, List<string>? skipped = null)
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            ForEachTensor(root, (name, t) =>
            {
                if (!result.TryAdd(name, t)) { t.Dispose(); throw new InvalidDataException($"{Path}: tensor '{name}' appears twice"); }
            }, skipped);
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    public void Dispose()
    {
        foreach (var t in _storages.Values) t.Dispose();
        _storages.Clear();
        _zip.Dispose();
        _file.Dispose();
    }
}

/// <summary>A torch storage class (<c>torch.FloatStorage</c>, <c>torch.storage.UntypedStorage</c>, ...).</summary>
internal sealed record TorchStorageType(string Name, ScalarType? DType);

/// <summary>
/// The globals <c>torch.load(weights_only=True)</c> allows (torch/_weights_only_unpickler.py),
/// each mapped to an inert stand-in, and what calling one builds.
/// </summary>
internal sealed class Allowlist(string path, UnknownGlobals unknown)
{
    private sealed record Callable(string Name);

    private static readonly HashSet<string> Callables =
    [
        "collections.OrderedDict", "collections.Counter",
        "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "torch._tensor._rebuild_from_type_v2",
        "torch.nn.parameter.Parameter", "torch.Tensor", "torch.Size", "torch.device",
        "torch.serialization._get_layout", "_codecs.encode",
        "builtins.bytearray", "builtins.set", "builtins.complex",
    ];

    // allowed by torch's weights_only unpickler but producing tensors this reader cannot build
    private static readonly Dictionary<string, string> Unsupported = new()
    {
        ["torch._utils._rebuild_qtensor"] = "quantized tensors",
        ["torch._utils._rebuild_sparse_tensor"] = "sparse tensors",
        ["torch._utils._rebuild_meta_tensor_no_storage"] = "meta tensors",
        ["torch._utils._rebuild_nested_tensor"] = "nested tensors",
        ["torch._utils._rebuild_wrapper_subclass"] = "tensor subclasses",
        ["torch._utils._rebuild_device_tensor_from_numpy"] = "numpy-backed tensors",
        ["torch._utils._rebuild_device_tensor_from_cpu_tensor"] = "device tensors saved from CPU copies",
    };

    private static readonly Dictionary<string, ScalarType?> StorageTypes = new()
    {
        ["torch.FloatStorage"] = ScalarType.Float32, ["torch.HalfStorage"] = ScalarType.Float16,
        ["torch.BFloat16Storage"] = ScalarType.BFloat16, ["torch.DoubleStorage"] = ScalarType.Float64,
        ["torch.LongStorage"] = ScalarType.Int64, ["torch.IntStorage"] = ScalarType.Int32,
        ["torch.ShortStorage"] = ScalarType.Int16, ["torch.CharStorage"] = ScalarType.Int8,
        ["torch.ByteStorage"] = ScalarType.Byte, ["torch.BoolStorage"] = ScalarType.Bool,
        ["torch.ComplexFloatStorage"] = ScalarType.ComplexFloat32, ["torch.ComplexDoubleStorage"] = ScalarType.ComplexFloat64,
        ["torch.storage.UntypedStorage"] = ScalarType.Byte, ["torch.UntypedStorage"] = ScalarType.Byte,
        ["torch.QInt8Storage"] = null, ["torch.QUInt8Storage"] = null, ["torch.QInt32Storage"] = null,
        ["torch.QUInt4x2Storage"] = null, ["torch.QUInt2x4Storage"] = null, ["torch.storage.TypedStorage"] = null,
    };

    internal static readonly Dictionary<string, ScalarType?> DTypes = new()
    {
        ["float32"] = ScalarType.Float32, ["float16"] = ScalarType.Float16, ["bfloat16"] = ScalarType.BFloat16,
        ["float64"] = ScalarType.Float64, ["int64"] = ScalarType.Int64, ["int32"] = ScalarType.Int32,
        ["int16"] = ScalarType.Int16, ["int8"] = ScalarType.Int8, ["uint8"] = ScalarType.Byte, ["bool"] = ScalarType.Bool,
        ["complex64"] = ScalarType.ComplexFloat32, ["complex128"] = ScalarType.ComplexFloat64,
        ["complex32"] = null, ["qint8"] = null, ["quint8"] = null, ["qint32"] = null, ["quint4x2"] = null, ["quint2x4"] = null,
        ["float8_e5m2"] = null, ["float8_e4m3fn"] = null, ["float8_e5m2fnuz"] = null, ["float8_e4m3fnuz"] = null,
        ["uint16"] = null, ["uint32"] = null, ["uint64"] = null, ["uint1"] = null, ["uint2"] = null, ["uint3"] = null,
        ["uint4"] = null, ["uint5"] = null, ["uint6"] = null, ["uint7"] = null, ["int1"] = null, ["int2"] = null,
        ["int3"] = null, ["int4"] = null, ["int5"] = null, ["int6"] = null, ["int7"] = null,
        ["per_tensor_affine"] = null, ["per_tensor_symmetric"] = null, ["per_channel_affine"] = null,
        ["per_channel_symmetric"] = null, ["per_channel_affine_float_qparams"] = null,
    };

    // Refused even with UnknownGlobals.Opaque: nothing would run them, but a checkpoint naming
    // them is hostile and is reported as such instead of being read.
    private static readonly string[] BlockedModules =
    [
        "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pickle", "_pickle",
        "marshal", "ctypes", "code", "codeop", "pty", "webbrowser", "multiprocessing", "asyncio", "signal",
        "pdb", "bdb", "timeit", "functools", "operator", "types", "inspect", "io", "_io", "tempfile", "pathlib",
        "glob", "urllib", "http", "requests", "ftplib", "smtplib", "telnetlib", "threading", "_thread", "gc",
        "copyreg", "codecs", "_codecs", "zipimport", "pkgutil", "site", "sysconfig", "numpy.f2py", "torch._C",
        "torch.hub", "torch.jit", "torch.ops", "torch._ops", "torch.serialization", "torch.package",
        "torch.utils.cpp_extension", "torch._dynamo", "torch.fx", "torch.compiler", "dill", "cloudpickle", "joblib",
    ];

    // builtins that are inert type names (omegaconf and Lightning pickles mention some of them)
    private static readonly HashSet<string> InertBuiltins =
    [
        "dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bytes", "bool", "object",
        "complex", "slice", "range", "NoneType", "Ellipsis", "NotImplemented",
    ];

    public object Resolve(PickleGlobal g)
    {
        var full = g.FullName;
        if (Callables.Contains(full) || Unsupported.ContainsKey(full)) return new Callable(full);
        if (StorageTypes.TryGetValue(full, out var st)) return new TorchStorageType(full, st);
        if (g.Module == "torch" && DTypes.ContainsKey(g.Name)) return new TorchDType(g.Name);
        if (unknown == UnknownGlobals.Opaque && !IsBlocked(g)) return g;
        throw UnsafePickle.Refuse(
            $"refusing to load {path}: global '{full}' is not allowed (only tensors, dtypes and plain containers are " +
            (unknown == UnknownGlobals.Opaque ? "read; this one could run code, so the file is refused even with opaque objects allowed)"
                                               : "read, as torch.load(weights_only=True) does)"), full);
    }

    private static bool IsBlocked(PickleGlobal g)
    {
        if (g.Module == "builtins") return !InertBuiltins.Contains(g.Name);
        return BlockedModules.Any(m => g.Module == m || g.Module.StartsWith(m + ".", StringComparison.Ordinal))
               || g.Name.StartsWith("__", StringComparison.Ordinal) || g.Name.Contains('.');
    }

    /// <summary>For plain (non-zip) pickles: containers only, no tensor can be built.</summary>
    public object? CallWithoutTensors(object func, PickleTuple args) =>
        func is Callable c && c.Name.StartsWith("torch.", StringComparison.Ordinal)
            ? throw new InvalidDataException($"{path}: {c.Name} outside a torch.save archive")
            : Call(func, args);

    public object? Call(object func, PickleTuple args)
    {
        switch (func)
        {
            case PickleGlobal opaque: return new PickleObject(opaque, args); // UnknownGlobals.Opaque: inert record
            case TorchStorageType st: throw new InvalidDataException($"{path}: a storage ({st.Name}) built outside a persistent id (legacy storage pickling) is not supported");
            case Callable c: return CallAllowed(c.Name, args);
            default: throw new InvalidDataException($"{path}: corrupt pickle: calling a {PickleFormat.TypeOf(func)}");
        }
    }

    private object? CallAllowed(string name, PickleTuple a)
    {
        if (Unsupported.TryGetValue(name, out var what))
            throw new InvalidDataException($"{path}: {name} ({what}) is not supported; only dense strided tensors are");
        switch (name)
        {
            case "collections.OrderedDict":
            case "collections.Counter":
            {
                var d = new PickleDict { TypeName = name };
                if (a.Count >= 1 && a[0] is PickleDict src) foreach (var (k, v) in src) d.Set(k, v);
                else if (a.Count >= 1 && a[0] is IEnumerable<object?> pairs)
                    foreach (var p in pairs)
                        if (p is IReadOnlyList<object?> { Count: 2 } kv) d.Set(kv[0], kv[1]);
                        else throw Bad(name, a);
                return d;
            }
            case "torch._utils._rebuild_tensor":
                Need(name, a, 4);
                return Tensor(name, a[0], a[1], a[2], a[3], false, null);
            case "torch._utils._rebuild_tensor_v2":
                Need(name, a, 6);
                return Tensor(name, a[0], a[1], a[2], a[3], a[4] is true, null);
            case "torch._utils._rebuild_tensor_v3":
                Need(name, a, 7);
                return Tensor(name, a[0], a[1], a[2], a[3], a[4] is true, a[6]);
            case "torch._utils._rebuild_parameter":
            case "torch._utils._rebuild_parameter_with_state":
                Need(name, a, name.EndsWith("state", StringComparison.Ordinal) ? 4 : 3);
                return AsParameter(name, a[0], a[1] is true);
            case "torch.nn.parameter.Parameter":
                return AsParameter(name, a.Count > 0 ? a[0] : null, a.Count < 2 || a[1] is true);
            case "torch._tensor._rebuild_from_type_v2":
            {
                Need(name, a, 4);
                if (a[0] is not Callable f || a[2] is not PickleTuple fargs) throw Bad(name, a);
                var r = CallAllowed(f.Name, fargs);
                if (a[1] is Callable { Name: "torch.nn.parameter.Parameter" }) return AsParameter(name, r, false);
                if (a[1] is Callable { Name: "torch.Tensor" }) return r;
                throw new InvalidDataException($"{path}: tensor subclass {PickleFormat.Repr(a[1])} is not supported");
            }
            case "torch.Tensor":
                throw new InvalidDataException($"{path}: torch.Tensor() built directly (legacy tensor pickling) is not supported");
            case "torch.Size":
                return a.Count == 0 ? PickleTuple.Empty : a[0] is IEnumerable<object?> dims ? new PickleTuple(dims.ToArray()) : throw Bad(name, a);
            case "torch.device":
                if (a.Count >= 1 && a[0] is string dev) return a.Count >= 2 && a[1] is long idx ? $"{dev}:{idx}" : dev;
                throw Bad(name, a);
            case "torch.serialization._get_layout":
                return a.Count == 1 && a[0] is string layout ? layout : throw Bad(name, a);
            case "_codecs.encode":
            {
                if (a.Count < 1 || a[0] is not string s) throw Bad(name, a);
                var enc = a.Count > 1 && a[1] is string e ? e.ToLowerInvariant().Replace('_', '-') : "utf-8";
                return enc switch
                {
                    "latin1" or "latin-1" or "iso-8859-1" => Encoding.Latin1.GetBytes(s),
                    "utf-8" or "utf8" => Encoding.UTF8.GetBytes(s),
                    "ascii" => Encoding.ASCII.GetBytes(s),
                    _ => throw new InvalidDataException($"{path}: _codecs.encode with encoding '{enc}' is not supported"),
                };
            }
            case "builtins.bytearray":
                return a.Count == 0 ? Array.Empty<byte>()
                     : a[0] is byte[] b ? b.ToArray()
                     : a[0] is string str ? Encoding.Latin1.GetBytes(str)
                     : a[0] is List<object?> ints ? ints.Select(i => i is long l && l is >= 0 and <= 255 ? (byte)l : throw Bad(name, a)).ToArray()
                     : throw Bad(name, a);
            case "builtins.set":
            {
                var set = new PickleSet(frozen: false);
                if (a.Count > 0) foreach (var i in a[0] as IEnumerable<object?> ?? throw Bad(name, a)) set.Add(i);
                return set;
            }
            case "builtins.complex":
                return new Complex(a.Count > 0 ? ToDouble(a[0], name, a) : 0, a.Count > 1 ? ToDouble(a[1], name, a) : 0);
            default:
                throw new InvalidDataException($"{path}: {name} cannot be called");
        }
    }

    private double ToDouble(object? o, string name, PickleTuple a) => o switch
    {
        double d => d,
        long l => l,
        _ => throw Bad(name, a),
    };

    private InvalidDataException Bad(string name, PickleTuple a) =>
        new($"{path}: {name} called with unexpected arguments {PickleFormat.Repr(a)}");

    private void Need(string name, PickleTuple a, int n)
    {
        if (a.Count < n) throw new InvalidDataException($"{path}: {name} needs {n} arguments, got {a.Count}");
    }

    private TorchTensorRef AsParameter(string name, object? data, bool requiresGrad) =>
        data is TorchTensorRef t
            ? new TorchTensorRef { Storage = t.Storage, DType = t.DType, StorageOffset = t.StorageOffset, Shape = t.Shape, Stride = t.Stride, RequiresGrad = requiresGrad, IsParameter = true }
            : throw new InvalidDataException($"{path}: {name} of a {PickleFormat.TypeOf(data)}, not of a tensor");

    private TorchTensorRef Tensor(string name, object? storage, object? offset, object? size, object? stride, bool requiresGrad, object? dtype)
    {
        if (storage is not TorchStorageRef s)
            throw new InvalidDataException($"{path}: {name} of a {PickleFormat.TypeOf(storage)}, not of a storage");
        ScalarType type = s.DType;
        if (dtype != null)
        {
            if (dtype is not TorchDType td || !DTypes.TryGetValue(td.Name, out var sd) || sd is null)
                throw new InvalidDataException($"{path}: {name} with dtype {PickleFormat.Repr(dtype)} is not supported");
            type = sd.Value;
        }
        long[] shape = Longs(size, name, "size"), strides = Longs(stride, name, "stride");
        if (offset is not long off || off < 0) throw new InvalidDataException($"{path}: {name} with storage offset {PickleFormat.Repr(offset)}");
        if (shape.Length != strides.Length || shape.Any(d => d < 0) || strides.Any(d => d < 0))
            throw new InvalidDataException($"{path}: {name} with size [{string.Join(", ", shape)}] and stride [{string.Join(", ", strides)}]");
        long storageNumel = s.Numel * TorchCheckpoint.ElementSize(s.DType) / TorchCheckpoint.ElementSize(type);
        if (shape.All(d => d > 0))
        {
            // the last element the view touches must lie inside the storage
            BigInteger last = off;
            for (int i = 0; i < shape.Length; i++) last += (BigInteger)(shape[i] - 1) * strides[i];
            if (last >= storageNumel)
                throw new InvalidDataException($"{path}: tensor of size [{string.Join(", ", shape)}], stride [{string.Join(", ", strides)}], offset {off} reaches element {last} of storage '{s.Key}' which has {storageNumel}");
        }
        return new TorchTensorRef { Storage = s, DType = type, StorageOffset = off, Shape = shape, Stride = strides, RequiresGrad = requiresGrad };
    }

    private long[] Longs(object? o, string name, string what) => o is IEnumerable<object?> items
        ? items.Select(i => i is long l ? l : throw new InvalidDataException($"{path}: {name} {what} holds a {PickleFormat.TypeOf(i)}")).ToArray()
        : throw new InvalidDataException($"{path}: {name} {what} is a {PickleFormat.TypeOf(o)}, not a tuple");
}

/// <summary>Single-file checkpoints of any supported format.</summary>
public static class Checkpoint
{
    /// <summary>
    /// Reads the tensors of a <c>.safetensors</c> file or of a torch.save checkpoint
    /// (<c>.bin</c>, <c>.ckpt</c>, <c>.pt</c>, <c>.pth</c>) into a name -> tensor map (CPU, stored dtype).
    /// <paramref name="root"/> selects a nested dict of a pickle checkpoint (keys separated by '/',
    /// e.g. <c>state_dict</c> of a Lightning checkpoint); nested dicts below it are flattened with '.'.
    /// <paramref name="unknownGlobals"/>: see <see cref="UnknownGlobals"/> (a Lightning checkpoint
    /// whose hyper-parameters are custom objects needs <see cref="UnknownGlobals.Opaque"/>).
    /// </summary>
    public static Dictionary<string, Tensor> ReadTensors(string path, string? root = null, UnknownGlobals unknownGlobals = UnknownGlobals.Refuse)
    {
        if (IsSafeTensors(path))
        {
            if (!string.IsNullOrEmpty(root)) throw new ArgumentException($"{path}: a safetensors file is flat; it has no nested '{root}'", nameof(root));
            if (!File.Exists(path)) throw new FileNotFoundException($"missing checkpoint {path}", path);
            return SafeTensors.Load(path);
        }
        using var ckpt = TorchCheckpoint.Open(path, unknownGlobals);
        return ckpt.ReadTensors(root);
    }

    /// <summary>True for <c>*.safetensors</c> names; everything else is read as a torch.save pickle.</summary>
    public static bool IsSafeTensors(string path) => path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase);
}
