using Elect.Modeling;
using Elect.Pipelines.Mgie;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>The MGIE family's editing half: the edit head, its conditioning and the editing runs, against the reference.</summary>
public class MgieTests
{
    /// <summary>
    /// MGIE's EditMapper against torch's nn.Transformer (scripts/goldens/mgie_edit_head.py: tiny random sizes, 2 encoder and
    /// 3 decoder layers, a batch of 2, the zero states of the NULL conditioning, emb given as [8, H]).
    /// </summary>
    [Fact]
    public void EditHeadMatchesTorchTransformer()
    {
        TorchRuntime.Initialize();
        using var scope = NewDisposeScope();
        var golden = SafeTensors.Load(Repo.Data("mgie-edit-head.safetensors"));
        using var head = EditMapper.FromWeights(golden, "mgie-edit-head.safetensors", CPU, ScalarType.Float32);
        Assert.Equal(new EditMapperConfig(24, 16, 5, 20, 2, 3, 12), head.Config);
        using var _ = no_grad();
        var emb = golden["emb"];
        TensorAssert.Close(golden["output.llm"], head.call(golden["input.llm"], emb), 1e-5, "edit head, batch of 2");
        TensorAssert.Close(golden["output.null"], head.call(zeros(1, 8, 24), emb), 1e-5, "edit head, zero states (NULL)");
        TensorAssert.Close(golden["output.llm1_emb2d"], head.call(golden["input.llm"][1], emb[0]), 1e-5, "edit head, [8, H] inputs");
    }

    [Fact]
    public void EditHeadRefusesIncompleteWeights()
    {
        TorchRuntime.Initialize();
        using var scope = NewDisposeScope();
        var golden = SafeTensors.Load(Repo.Data("mgie-edit-head.safetensors"));
        var missing = new Dictionary<string, Tensor>(golden);
        missing.Remove("edit_head.mapper.decoder.norm.bias");
        var e = Assert.Throws<InvalidDataException>(() => EditMapper.FromWeights(missing, "mllm.pt", CPU, ScalarType.Float32));
        Assert.Contains("mllm.pt: missing tensor 'edit_head.mapper.decoder.norm.bias'", e.Message);
        var noHead = golden.Where(kv => !kv.Key.StartsWith("edit_head.llm2hid", StringComparison.Ordinal)).ToDictionary();
        e = Assert.Throws<InvalidDataException>(() => EditMapper.FromWeights(noHead, "mllm.pt", CPU, ScalarType.Float32));
        Assert.Contains("missing tensor 'edit_head.llm2hid.weight'", e.Message);
        var surplus = new Dictionary<string, Tensor>(golden) { ["edit_head.extra"] = zeros(2) };
        e = Assert.Throws<InvalidDataException>(() => EditMapper.FromWeights(surplus, "mllm.pt", CPU, ScalarType.Float32));
        Assert.Contains("unexpected tensor 'edit_head.extra'", e.Message);
    }
}
