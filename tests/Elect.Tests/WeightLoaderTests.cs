using Elect.Modeling;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

public sealed class WeightLoaderTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("elect-loader-").FullName;

    public WeightLoaderTests() => TorchRuntime.Initialize();

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private sealed class Tiny : nn.Module<Tensor, Tensor>
    {
        private readonly Linear proj;
        private readonly ModuleList<Linear> layers;

        public Tiny() : base("Tiny")
        {
            proj = nn.Linear(3, 2);
            layers = nn.ModuleList(nn.Linear(2, 2, hasBias: false));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => layers[0].forward(proj.forward(x));
    }

    private static Dictionary<string, Tensor> Weights(ScalarType dtype) => new()
    {
        ["proj.weight"] = arange(6, dtype: ScalarType.Float32).reshape(2, 3).to(dtype),
        ["proj.bias"] = tensor(new float[] { 0.5f, -0.5f }).to(dtype),
        ["layers.0.weight"] = eye(2).to(dtype),
    };

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    public void LoadsEveryStoredFloatTypeIntoTheModuleDtype(ScalarType stored)
    {
        SafeTensors.Save(Path.Combine(_dir, "model.safetensors"), Weights(stored));
        using var m = new Tiny();
        WeightLoader.Load(m, _dir);
        var sd = m.state_dict();
        Assert.Equal(ScalarType.Float32, sd["proj.weight"].dtype);
        Assert.Equal(5f, sd["proj.weight"][1, 2].item<float>());
        Assert.Equal(-0.5f, sd["proj.bias"][1].item<float>());
    }

    [Fact]
    public void LoadsShardedCheckpoints()
    {
        var w = Weights(ScalarType.Float16);
        SafeTensors.Save(Path.Combine(_dir, "model-00001-of-00002.safetensors"), new Dictionary<string, Tensor> { ["proj.weight"] = w["proj.weight"], ["proj.bias"] = w["proj.bias"] });
        SafeTensors.Save(Path.Combine(_dir, "model-00002-of-00002.safetensors"), new Dictionary<string, Tensor> { ["layers.0.weight"] = w["layers.0.weight"] });
        File.WriteAllText(Path.Combine(_dir, "model.safetensors.index.json"), """
        {"metadata": {}, "weight_map": {"proj.weight": "model-00001-of-00002.safetensors", "proj.bias": "model-00001-of-00002.safetensors",
         "layers.0.weight": "model-00002-of-00002.safetensors"}}
        """);
        using var m = new Tiny();
        WeightLoader.Load(m, _dir);
        Assert.Equal(1f, m.state_dict()["layers.0.weight"][1, 1].item<float>());
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        var w = Weights(ScalarType.Float32);
        w.Remove("proj.bias");
        SafeTensors.Save(Path.Combine(_dir, "model.safetensors"), w);
        using var m = new Tiny();
        var e = Assert.Throws<InvalidDataException>(() => WeightLoader.Load(m, _dir));
        Assert.Contains("missing tensor 'proj.bias'", e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void UnexpectedAndMisshapenTensorsAreNamedWithTheirFile()
    {
        var w = Weights(ScalarType.Float32);
        w["extra.weight"] = zeros(1);
        SafeTensors.Save(Path.Combine(_dir, "model.safetensors"), w);
        using var m = new Tiny();
        var e = Assert.Throws<InvalidDataException>(() => WeightLoader.Load(m, _dir));
        Assert.Contains("unexpected tensor 'extra.weight'", e.Message);
        Assert.Contains(Path.Combine(_dir, "model.safetensors"), e.Message);

        w.Remove("extra.weight");
        w["proj.weight"] = zeros(3, 3);
        SafeTensors.Save(Path.Combine(_dir, "model.safetensors"), w);
        var s = Assert.Throws<InvalidDataException>(() => WeightLoader.Load(m, _dir));
        Assert.Contains("'proj.weight' has shape [3, 3]", s.Message);
        Assert.Contains("expects [2, 3]", s.Message);
    }

    [Fact]
    public void UnknownDtypeAndMissingFilesAreReported()
    {
        // a header declaring an unsupported dtype
        var header = """{"proj.weight":{"dtype":"F8_E4M3","shape":[2,3],"data_offsets":[0,6]}}""";
        var bytes = System.Text.Encoding.UTF8.GetBytes(header);
        var path = Path.Combine(_dir, "model.safetensors");
        using (var fs = File.Create(path))
        {
            fs.Write(BitConverter.GetBytes((long)bytes.Length));
            fs.Write(bytes);
            fs.Write(new byte[6]);
        }
        using var m = new Tiny();
        var e = Assert.Throws<InvalidDataException>(() => WeightLoader.Load(m, _dir));
        Assert.Contains("unsupported dtype 'F8_E4M3'", e.Message);
        Assert.Contains("proj.weight", e.Message);

        File.Delete(path);
        var f = Assert.Throws<FileNotFoundException>(() => WeightLoader.Load(m, _dir));
        Assert.Contains("no .safetensors weights", f.Message);
        Assert.Throws<DirectoryNotFoundException>(() => WeightLoader.Load(m, Path.Combine(_dir, "nope")));

        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Contains("not a safetensors file", Assert.Throws<InvalidDataException>(() => WeightLoader.Load(m, _dir)).Message);
    }
}
