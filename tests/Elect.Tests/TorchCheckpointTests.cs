using System.IO.Compression;
using System.Numerics;
using System.Text;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// The committed files of tests/Elect.Tests/Data/pickle, written by torch.save in the reference
/// environment (scripts/goldens/make_pickle_checkpoints.py), with their expected tensors in
/// safetensors files beside them.
/// </summary>
internal static class PickleData
{
    public static readonly string Dir = Repo.Data("pickle");

    public static string File(string name) => Path.Combine(Dir, name);

    /// <summary>Same shape and exactly equal elements.</summary>
    public static bool Same(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape)) return false;
        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }

    public static void AssertSame(Tensor expected, Tensor actual, string what)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.True(expected.shape.SequenceEqual(actual.shape), $"{what}: shape [{string.Join(",", actual.shape)}], expected [{string.Join(",", expected.shape)}]");
        using var a = actual.contiguous();
        Assert.True(Same(expected, a), $"{what}: values differ");
    }
}

public sealed class TorchCheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("elect-pickle-").FullName;

    public TorchCheckpointTests() => TorchRuntime.Initialize();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData("tensors_p1.pt")]
    [InlineData("tensors_p2.pt")]
    [InlineData("tensors_p4.pt")]
    [InlineData("tensors_p5.pt")]
    public void ReadsEveryDtypeAndLayoutExactly(string file)
    {
        var expected = SafeTensors.Load(PickleData.File("tensors.safetensors"));
        using var ckpt = TorchCheckpoint.Open(PickleData.File(file));
        var refs = ckpt.TensorEntries().ToDictionary(e => e.Key, e => e.Value);
        Assert.Equal(expected.Keys.Order(), refs.Keys.Order());
        var got = ckpt.ReadTensors();
        try
        {
            foreach (var (name, t) in expected) PickleData.AssertSame(t, got[name], $"{file}:{name}");

            // views keep the stored offsets and strides, as torch.load gives them
            Assert.Equal([1L, 4L], got["transposed"].stride());
            Assert.False(got["transposed"].is_contiguous());
            Assert.Equal([4L, 2L], got["strided"].stride());
            Assert.Equal(1L, refs["strided"].StorageOffset);
            Assert.Equal(2L, refs["shared_a"].StorageOffset);
            Assert.Equal(5L, refs["shared_b"].StorageOffset);
            Assert.Equal(refs["shared_a"].Storage, refs["shared_b"].Storage);
            Assert.Equal(12L, refs["shared_a"].Storage.Numel);
            Assert.Empty(got["scalar"].shape);
            Assert.Equal([0L, 3L], got["empty"].shape);
            Assert.True(refs["param"].IsParameter);
            Assert.True(refs["param"].RequiresGrad);
            Assert.False(refs["f32"].IsParameter);
            Assert.True(refs["param_attr"].IsParameter); // _rebuild_parameter_with_state
            Assert.False(refs["with_attr"].IsParameter); // _rebuild_from_type_v2(torch.Tensor)

            // the two tensors of one storage share its memory: shared_a[1, 0] is shared_b[0]
            got["shared_a"][1, 0] = tensor(100f);
            Assert.Equal(100f, got["shared_b"][0].item<float>());
        }
        finally
        {
            foreach (var t in got.Values.Concat(expected.Values)) t.Dispose();
        }
    }

    [Fact]
    public void ChunkedStorageReadsGiveTheSameBytes()
    {
        int saved = TorchCheckpoint.ReadChunkBytes;
        TorchCheckpoint.ReadChunkBytes = 8; // two float32 elements per read
        try
        {
            var expected = SafeTensors.Load(PickleData.File("tensors.safetensors"));
            var got = Checkpoint.ReadTensors(PickleData.File("tensors_p2.pt"));
            foreach (var (name, t) in expected) PickleData.AssertSame(t, got[name], name);
        }
        finally
        {
            TorchCheckpoint.ReadChunkBytes = saved;
        }
    }

    [Fact]
    public void ModuleStateDictIsAnOrderedDictWithItsMetadata()
    {
        using var ckpt = TorchCheckpoint.Open(PickleData.File("module_state.bin"));
        var root = Assert.IsType<PickleDict>(ckpt.Root);
        Assert.Equal("collections.OrderedDict", root.TypeName);
        Assert.Equal(["proj.weight", "proj.bias", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked", "head.weight"],
                     root.Keys.Cast<string>().ToArray());
        var state = Assert.IsType<PickleDict>(root.State);
        Assert.True(state.ContainsKey("_metadata"));
        var expected = SafeTensors.Load(PickleData.File("module_state.safetensors"));
        var got = ckpt.ReadTensors();
        foreach (var (name, t) in expected) PickleData.AssertSame(t, got[name], name);
        Assert.Equal(ScalarType.Int64, got["norm.num_batches_tracked"].dtype);
        Assert.Equal(9L, got["norm.num_batches_tracked"].item<long>());
    }

    [Fact]
    public void LightningCheckpointKeepsItsPlainEntriesAndGivesTheStateDict()
    {
        var path = PickleData.File("lightning.ckpt");
        using var ckpt = TorchCheckpoint.Open(path);
        var root = Assert.IsType<PickleDict>(ckpt.Root);
        Assert.Equal(7L, root["global_step"]);
        Assert.Equal(1L, root["epoch"]);
        Assert.Equal("1.9.0", root["pytorch-lightning_version"]);
        Assert.Null(root["loops"]);
        var h = Assert.IsType<PickleDict>(root["hparams"]);
        Assert.Equal(1e-4, h["lr"]);
        Assert.Equal(new PickleTuple([0.9, 0.999]), h["betas"]);
        Assert.Equal(new object?[] { "unet", "vae" }, Assert.IsType<List<object?>>(h["names"]));
        Assert.Null(h["none"]);
        Assert.Equal(true, h["flag"]);
        Assert.Equal(BigInteger.Pow(2, 70), h["big"]);
        Assert.Equal(-5L, h["neg"]);
        Assert.Equal(-BigInteger.Pow(2, 65), h["neg_big"]);
        Assert.Equal(new byte[] { 0, 1, 255 }, h["blob"]);
        var tags = Assert.IsType<PickleSet>(h["tags"]);
        Assert.True(tags.Contains(3L) && tags.Contains(4L) && tags.Count == 2);
        Assert.Equal(new TorchDType("float16"), h["dtype"]);
        Assert.Equal(new PickleTuple([2L, 3L]), h["size"]);
        var nested = Assert.IsType<PickleDict>(h["nested"]);
        Assert.Equal(new PickleTuple([2.5, "x"]), Assert.IsType<List<object?>>(nested["deep"])[1]);

        var skipped = new List<string>();
        var all = ckpt.TensorEntries(null, skipped);
        Assert.All(all, e => Assert.StartsWith("state_dict.model.", e.Key));
        Assert.Contains("global_step", skipped);
        Assert.Contains("hparams.lr", skipped);

        var expected = SafeTensors.Load(PickleData.File("module_state.safetensors"));
        var sd = Checkpoint.ReadTensors(path, "state_dict");
        Assert.Equal(expected.Keys.Select(k => "model." + k).Order(), sd.Keys.Order());
        foreach (var (name, t) in expected) PickleData.AssertSame(t, sd["model." + name], name);

        var e1 = Assert.Throws<KeyNotFoundException>(() => ckpt.TensorEntries("state_dict/nope"));
        Assert.Contains("no entry 'state_dict/nope'", e1.Message);
        Assert.Contains("not a dict of tensors", Assert.Throws<InvalidDataException>(() => ckpt.TensorEntries("global_step")).Message);
    }

    [Fact]
    public void UnknownClassesAreRefusedUnlessKeptOpaqueOutsideTheTensors()
    {
        var path = PickleData.File("lightning_custom.ckpt");
        var e = Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(path));
        Assert.Contains("global 'argparse.Namespace' is not allowed", e.Message);
        Assert.Contains(path, e.Message);
        Assert.Equal("argparse.Namespace", UnsafePickle.GlobalOf(e));

        using var ckpt = TorchCheckpoint.Open(path, UnknownGlobals.Opaque);
        var root = Assert.IsType<PickleDict>(ckpt.Root);
        var hp = Assert.IsType<PickleObject>(root["hyper_parameters"]);
        Assert.Equal("argparse.Namespace", hp.Type.FullName);
        Assert.Equal(1e-4, Assert.IsType<PickleDict>(hp.State)["lr"]);
        var callbacks = Assert.IsType<PickleDict>(root["callbacks"]);
        Assert.Equal("collections.Counter", Assert.IsType<PickleDict>(callbacks["timer"]).TypeName);
        Assert.Equal("datetime.timedelta", Assert.IsType<PickleObject>(callbacks["stamp"]).Type.FullName);

        var sd = ckpt.ReadTensors("state_dict");
        Assert.Equal(8, sd.Count);
        var whole = Assert.Throws<InvalidDataException>(() => ckpt.TensorEntries());
        Assert.Contains("entry 'hyper_parameters'", whole.Message);
        Assert.Contains("argparse.Namespace", whole.Message);
    }

    [Theory]
    [InlineData("evil_system.pt", "posix.system", "system")]
    [InlineData("evil_eval.pt", "builtins.eval", "eval")]
    [InlineData("evil_popen.pt", "subprocess.Popen", "popen")]
    [InlineData("evil_in_hparams.ckpt", "posix.system", "nested")]
    [InlineData("evil_raw.pkl", "posix.system", "system")]
    public void MaliciousPicklesAreRefusedByNameAndNothingRuns(string file, string global, string marker)
    {
        var markerPath = $"/tmp/elect-pickle-pwned-{marker}";
        File.Delete(markerPath);
        var path = PickleData.File(file);
        foreach (var mode in new[] { UnknownGlobals.Refuse, UnknownGlobals.Opaque })
        {
            var e = Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(path, mode));
            Assert.Contains($"refusing to load {path}", e.Message);
            Assert.Contains($"global '{global}' is not allowed", e.Message);
            Assert.Equal(global, UnsafePickle.GlobalOf(e));
            Assert.Throws<InvalidDataException>(() => Checkpoint.ReadTensors(path, null, mode));
        }
        Assert.False(File.Exists(markerPath), $"the payload of {file} ran");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void PlainContainersOfEveryProtocolAreRebuilt(int protocol)
    {
        var path = PickleData.File($"plain_p{protocol}.pkl");
        var d = Assert.IsType<PickleDict>(TorchCheckpoint.LoadPlainPickle(path));
        Assert.Equal(7L, d["int"]);
        Assert.Equal(-300L, d["neg"]);
        Assert.Equal((long)int.MaxValue, d["i32"]);
        Assert.Equal(BigInteger.Pow(2, 70), d["big"]);
        Assert.Equal(-BigInteger.Pow(2, 65), d["neg_big"]);
        Assert.Equal(1.5e-3, d["float"]);
        Assert.True(double.IsNegative((double)d["nan_free"]!));
        Assert.Equal("caf\u00e9 \u2713\nline", d["str"]);
        Assert.Equal("", d["empty"]);
        Assert.Equal(new byte[] { 0, 255 }, d["bytes"]);
        Assert.Null(d["none"]);
        Assert.Equal(true, d["t"]);
        Assert.Equal(false, d["f"]);
        var list = Assert.IsType<List<object?>>(d["list"]);
        Assert.Equal(1L, list[0]);
        Assert.Equal(3L, Assert.IsType<List<object?>>(Assert.IsType<List<object?>>(list[1])[1])[0]);
        Assert.Equal(new PickleTuple([1L]), d["tuple1"]);
        Assert.Equal(new PickleTuple([1L, 2L, 3L]), d["tuple3"]);
        Assert.Equal(new PickleTuple([1L, 2L, 3L, 4L, 5L]), d["tuple5"]);
        Assert.Equal(PickleTuple.Empty, d["empty_tuple"]);
        var set = Assert.IsType<PickleSet>(d["set"]);
        Assert.True(set.Count == 2 && set.Contains(5L) && set.Contains(6L) && !set.Frozen);
        var od = Assert.IsType<PickleDict>(d["odict"]);
        Assert.Equal("collections.OrderedDict", od.TypeName);
        Assert.Equal(new object?[] { "b", "a" }, od.Keys.ToArray());
        Assert.Equal(new Complex(1.5, -2.0), d["complex"]);
        Assert.Equal("int key", d[3L]);
        Assert.Equal("tuple key", d[new PickleTuple([1L, "k"])]);
        var shared = Assert.IsType<List<object?>>(d["shared"]);
        Assert.Same(shared[0], shared[1]); // one object, memoised
        if (protocol >= 4)
        {
            var fs = Assert.IsType<PickleSet>(d["frozenset"]);
            Assert.True(fs.Frozen && fs.Contains("a"));
        }
        // a plain pickle is not a checkpoint
        Assert.Contains("a plain pickle (dict), not a torch.save zip archive", Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(path)).Message);
    }

    [Fact]
    public void LegacyFormatFailsClearly()
    {
        var e = Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(PickleData.File("legacy.pt")));
        Assert.Contains("legacy torch.save format", e.Message);
        Assert.Contains("re-save with torch>=1.6", e.Message);
    }

    // ---- hand-made archives: the zip layout and the checks on storages and views -------------

    /// <summary>
    /// A zip like torch.save's holding {"t": _rebuild_tensor_v2(storage, offset, (size,), (1,))}
    /// with storage ('storage', FloatStorage, '0', 'cpu', <paramref name="numel"/>) and 4 floats 0..3.
    /// </summary>
    private string MakeArchive(string folder, long offset, long size, long numel, string pidTag = "storage", string storageGlobal = "torch\nFloatStorage",
                               string byteorder = "little", string? secondFolder = null)
    {
        var p = new List<byte> { 0x80, 2, (byte)'}' };
        void Str(string s) { p.Add((byte)'X'); p.AddRange(BitConverter.GetBytes(s.Length)); p.AddRange(Encoding.UTF8.GetBytes(s)); }
        void Int(long v) { p.Add((byte)'J'); p.AddRange(BitConverter.GetBytes((int)v)); }
        void Op(string s) => p.AddRange(Encoding.ASCII.GetBytes(s));
        Str("t");
        Op("ctorch._utils\n_rebuild_tensor_v2\n((");
        Str(pidTag);
        Op($"c{storageGlobal}\n");
        Str("0"); Str("cpu"); Int(numel);
        Op("tQ");
        Int(offset); Int(size); p.Add(0x85); Int(1); p.Add(0x85); p.Add(0x89);
        Op("ccollections\nOrderedDict\n)Rt" + "Rs.");
        var path = Path.Combine(_dir, $"{folder}-{offset}-{size}-{numel}-{pidTag}-{byteorder}-{secondFolder}.pt");
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        void Entry(string name, byte[] bytes)
        {
            using var s = zip.CreateEntry($"{folder}/{name}", CompressionLevel.NoCompression).Open();
            s.Write(bytes);
        }
        Entry("data.pkl", p.ToArray());
        Entry("byteorder", Encoding.ASCII.GetBytes(byteorder));
        if (secondFolder != null)
            using (var s = zip.CreateEntry($"{secondFolder}/data.pkl").Open()) s.Write(p.ToArray());
        Entry("data/0", new[] { 0f, 1f, 2f, 3f }.SelectMany(BitConverter.GetBytes).ToArray());
        Entry("version", Encoding.ASCII.GetBytes("3\n"));
        return path;
    }

    [Fact]
    public void AnyTopLevelFolderNameIsRead()
    {
        var t = Checkpoint.ReadTensors(MakeArchive("my_model", offset: 1, size: 3, numel: 4));
        Assert.Equal([1f, 2f, 3f], t["t"].data<float>().ToArray());
    }

    [Fact]
    public void ViewsOutsideTheirStorageAndWrongStorageSizesAreRefused()
    {
        var e = Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(MakeArchive("archive", offset: 2, size: 3, numel: 4)));
        Assert.Contains("reaches element 4 of storage '0' which has 4", e.Message);
        var s = Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(MakeArchive("archive", offset: 0, size: 3, numel: 5)));
        Assert.Contains("storage '0' (torch.FloatStorage) holds 16 bytes, 5 elements need 20", s.Message);
        var pid = Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(MakeArchive("archive", 0, 3, 4, pidTag: "module")));
        Assert.Contains("only torch storages may be persistent ids", pid.Message);
        var g = Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(MakeArchive("archive", 0, 3, 4, storageGlobal: "posix\nsystem")));
        Assert.Contains("global 'posix.system' is not allowed", g.Message);
    }

    [Fact]
    public void BigEndianAndAmbiguousArchivesAndNewDtypesAreRefused()
    {
        Assert.Contains("stored big-endian", Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(MakeArchive("archive", 0, 3, 4, byteorder: "big"))).Message);
        Assert.Contains("several top-level folders with a data.pkl", Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(MakeArchive("archive", 0, 3, 4, secondFolder: "other"))).Message);
        var e = Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(PickleData.File("uint16.pt")));
        Assert.Contains("_rebuild_tensor_v3 with dtype torch.uint16 is not supported", e.Message);
    }

    [Fact]
    public void OpaqueModeKeepsInertNamesAndStillRefusesCodeRunningGlobals()
    {
        string Write(string name, byte[] pickle)
        {
            var path = Path.Combine(_dir, name);
            File.WriteAllBytes(path, pickle);
            return path;
        }
        byte[] Ascii(string s) => Encoding.Latin1.GetBytes(s);

        // mymod.Config(1) then BUILD {"a": 2}: kept as a record, never instantiated
        var custom = Write("custom.pkl", Ascii("\u0080\u0002cmymod\nConfig\nK\u0001\u0085R}X\u0001\u0000\u0000\u0000aK\u0002sb."));
        Assert.Contains("global 'mymod.Config' is not allowed", Assert.Throws<InvalidDataException>(() => TorchCheckpoint.LoadPlainPickle(custom)).Message);
        var o = Assert.IsType<PickleObject>(TorchCheckpoint.LoadPlainPickle(custom, UnknownGlobals.Opaque));
        Assert.Equal("mymod.Config", o.Type.FullName);
        Assert.Equal(new PickleTuple([1L]), o.Args);
        Assert.Equal(2L, Assert.IsType<PickleDict>(o.State)["a"]);

        foreach (var (module, name) in new[] { ("builtins", "getattr"), ("builtins", "exec"), ("os", "system"), ("nt", "system"),
                                               ("subprocess", "run"), ("torch.hub", "load"), ("mymod", "a.b"), ("importlib", "import_module") })
        {
            var evil = Write($"{module}-{name}.pkl", Ascii($"\u0080\u0002c{module}\n{name}\nX\u0002\u0000\u0000\u0000ls\u0085R."));
            var e = Assert.Throws<InvalidDataException>(() => TorchCheckpoint.LoadPlainPickle(evil, UnknownGlobals.Opaque));
            Assert.Contains($"global '{module}.{name}' is not allowed", e.Message);
            Assert.Contains("could run code", e.Message);
        }
        // protocol 4: STACK_GLOBAL takes module and name from the stack, checked the same way
        var stack = Write("stack.pkl", Ascii("\u0080\u0004\u008c\u0005posix\u008c\u0006system\u0093\u008c\u0002ls\u0085R."));
        Assert.Contains("global 'posix.system' is not allowed", Assert.Throws<InvalidDataException>(() => TorchCheckpoint.LoadPlainPickle(stack)).Message);
    }

    [Fact]
    public void TorchScriptArchivesAreNamed()
    {
        Assert.Contains("a TorchScript archive (torch.jit.save)", Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(PickleData.File("torchscript.pt"))).Message);
    }

    [Fact]
    public void NonCheckpointsAreReportedClearly()
    {
        var junk = Path.Combine(_dir, "junk.bin");
        File.WriteAllBytes(junk, [1, 2, 3, 4, 5]);
        Assert.Contains("neither a torch.save zip archive nor a readable pickle", Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(junk)).Message);
        var plain = Path.Combine(_dir, "plain.pkl");
        File.WriteAllBytes(plain, [0x80, 2, (byte)'K', 5, (byte)'.']); // pickle.dumps(5, 2)
        Assert.Contains("a plain pickle (int), not a torch.save zip archive", Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(plain)).Message);
        var zip = Path.Combine(_dir, "other.zip");
        using (var z = ZipFile.Open(zip, ZipArchiveMode.Create)) z.CreateEntry("readme.txt");
        Assert.Contains("without <folder>/data.pkl", Assert.Throws<InvalidDataException>(() => TorchCheckpoint.Open(zip)).Message);
        Assert.Throws<FileNotFoundException>(() => TorchCheckpoint.Open(Path.Combine(_dir, "nope.pt")));
    }
}

/// <summary>Component folders with PyTorch .bin weights, as diffusers' save_pretrained(safe_serialization=False) writes them.</summary>
public sealed class PickleWeightLoaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("elect-binload-").FullName;

    public PickleWeightLoaderTests() => TorchRuntime.Initialize();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Vae(string variant) => PickleData.File(Path.Combine("vae", variant));

    [Theory]
    [InlineData("single-bin")]
    [InlineData("sharded-bin")]
    public void VaeFromBinGivesTheSameWeightsAndOutputsAsFromSafetensors(string variant)
    {
        using var _ = NewDisposeScope();
        Assert.EndsWith(".bin", WeightLoader.FindWeightFiles(Vae(variant))[0]);
        using var fromSt = AutoencoderKL.FromPretrained(Vae("safetensors"), ScalarType.Float32, CPU);
        using var fromBin = AutoencoderKL.FromPretrained(Vae(variant), ScalarType.Float32, CPU);
        var a = fromSt.state_dict();
        var b = fromBin.state_dict();
        foreach (var (k, v) in a) Assert.True(PickleData.Same(v, b[k]), $"{variant}: weight {k} differs");

        var expected = SafeTensors.Load(PickleData.File("vae/expected.safetensors"));
        var (mean, std) = fromBin.Encode(expected["image"]);
        TensorAssert.Close(expected["latent_mean"], mean, 1e-5, "latent_mean");
        TensorAssert.Close(expected["latent_std"], std, 1e-5, "latent_std");
        var decoded = fromBin.Decode(expected["latent_mean"]);
        TensorAssert.Close(expected["decoded"], decoded, 1e-5, "decoded");
        var (meanSt, _) = fromSt.Encode(expected["image"]);
        Assert.True(PickleData.Same(meanSt, mean), "the .bin and .safetensors modules give different outputs");
    }

    [Fact]
    public void TensorNamesAreListedForBothFormats()
    {
        var st = WeightLoader.TensorNames(WeightLoader.FindWeightFiles(Vae("safetensors")));
        var bin = WeightLoader.TensorNames(WeightLoader.FindWeightFiles(Vae("sharded-bin")));
        Assert.Contains("encoder.conv_in.weight", st);
        Assert.Equal(st.Order(), bin.Order());
    }

    [Fact]
    public void Fp16VariantBinLoads()
    {
        using var _ = NewDisposeScope();
        var files = WeightLoader.FindWeightFiles(Vae("fp16-bin"));
        Assert.Equal("diffusion_pytorch_model.fp16.bin", Path.GetFileName(files.Single()));
        using var fromSt = AutoencoderKL.FromPretrained(Vae("safetensors"), ScalarType.Float32, CPU);
        using var fromBin = AutoencoderKL.FromPretrained(Vae("fp16-bin"), ScalarType.Float32, CPU);
        var b = fromBin.state_dict();
        foreach (var (k, v) in fromSt.state_dict())
            Assert.True(PickleData.Same(v.to(ScalarType.Float16).to(ScalarType.Float32), b[k]), $"fp16 weight {k} is not the float32 one rounded");
    }

    [Fact]
    public void SafetensorsArePreferredWhenBothExist()
    {
        foreach (var f in Directory.GetFiles(Vae("single-bin")).Concat(Directory.GetFiles(Vae("safetensors"))))
            File.Copy(f, Path.Combine(_dir, Path.GetFileName(f)), overwrite: true);
        Assert.Equal("diffusion_pytorch_model.safetensors", Path.GetFileName(WeightLoader.FindWeightFiles(_dir).Single()));
    }

    private sealed class Tiny : nn.Module<Tensor, Tensor>
    {
        private readonly Linear proj;
        private readonly BatchNorm1d norm;
        private readonly Linear? head;

        public Tiny(bool withHead) : base("Tiny")
        {
            proj = nn.Linear(3, 2);
            norm = nn.BatchNorm1d(2);
            if (withHead) head = nn.Linear(2, 3, hasBias: false);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => x;
    }

    [Fact]
    public void BinStateDictsGoThroughTheStrictKeyMatching()
    {
        File.Copy(PickleData.File("module_state.bin"), Path.Combine(_dir, "pytorch_model.bin"));
        using (var m = new Tiny(withHead: true))
        {
            WeightLoader.Load(m, _dir);
            var expected = SafeTensors.Load(PickleData.File("module_state.safetensors"));
            foreach (var (k, v) in expected) PickleData.AssertSame(v, m.state_dict()[k], k);
        }
        using (var m = new Tiny(withHead: false))
        {
            var e = Assert.Throws<InvalidDataException>(() => WeightLoader.Load(m, _dir));
            Assert.Contains("unexpected tensor 'head.weight'", e.Message);
            Assert.Contains("pytorch_model.bin", e.Message);
        }

        File.Delete(Path.Combine(_dir, "pytorch_model.bin"));
        File.Copy(PickleData.File("evil_system.pt"), Path.Combine(_dir, "pytorch_model.bin"));
        using (var m = new Tiny(withHead: true))
            Assert.Contains("global 'posix.system' is not allowed", Assert.Throws<InvalidDataException>(() => WeightLoader.Load(m, _dir)).Message);

        File.Delete(Path.Combine(_dir, "pytorch_model.bin"));
        File.Copy(PickleData.File("lightning.ckpt"), Path.Combine(_dir, "pytorch_model.bin"));
        using (var m = new Tiny(withHead: true))
            Assert.Contains("are not tensors", Assert.Throws<InvalidDataException>(() => WeightLoader.Load(m, _dir)).Message);
    }
}
