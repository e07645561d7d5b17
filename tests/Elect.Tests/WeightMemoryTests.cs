using Elect.Modeling;
using Elect.Pipelines;
using Elect.Pipelines.InstructDiffusion;
using Elect.Pipelines.InstructPix2Pix;
using Elect.Runner;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>The weights' memory, read from checkpoint headers before loading, and the refusal when it exceeds the free memory.</summary>
public sealed class WeightMemoryTests
{
    private static FamilyLoadRequest Request(string family, string path, ScalarType dtype, string? tokenizer = null) =>
        ModelFamilies.Get(family).Request(path, tokenizer, CPU, dtype, NullLogger.Instance);

    private static long ModuleBytes(nn.Module m) =>
        m.parameters().Sum(p => p.numel() * p.element_size()) + m.named_buffers().Sum(b => b.buffer.numel() * b.buffer.element_size());

    [SkippableFact]
    public void Footprint_predicts_what_the_loaded_InstructPix2Pix_model_holds()
    {
        Fixtures.Require();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            var predicted = ModelFamilies.Get("instructpix2pix").WeightBytes(Request("instructpix2pix", Fixtures.Ip2pTiny, dtype));
            Assert.NotNull(predicted);
            using var model = InstructPix2PixModel.Load(Fixtures.Ip2pTiny, "instructpix2pix", CPU, dtype);
            long loaded = ModuleBytes(model.Unet) + ModuleBytes(model.Vae) + ModuleBytes(model.TextEncoder!);
            // the files also hold the text encoder's int64 position_ids [1, 77] (616 bytes), which the model recomputes;
            // the model has no buffer the files lack beyond that
            Assert.InRange(predicted!.Value - loaded, 0, 1024);
            Assert.True(loaded > 1_000_000, $"{loaded}");
        }
    }

    [Fact]
    public void Single_file_checkpoint_counts_only_the_loaded_keys_the_same_in_both_formats()
    {
        TorchRuntime.Initialize();
        var family = ModelFamilies.Get("instructdiffusion");
        var clip = Path.Combine(IdiffData.Dir, "clip");
        var ckpt = family.WeightBytes(Request("instructdiffusion", IdiffData.Ckpt, ScalarType.Float32, clip));
        var st = family.WeightBytes(Request("instructdiffusion", IdiffData.Safetensors, ScalarType.Float32, clip));
        Assert.NotNull(ckpt);
        Assert.Equal(ckpt, st);
        // the same files with every key counted are larger (EMA copies, LDM schedule buffers)
        var all = WeightFootprint.Bytes([new WeightSource(IdiffData.Ckpt, Root: "state_dict")], ScalarType.Float32);
        Assert.True(all > ckpt, $"{all} vs {ckpt}");
        var half = family.WeightBytes(Request("instructdiffusion", IdiffData.Ckpt, ScalarType.Float16, clip));
        Assert.InRange(ckpt!.Value - 2 * half!.Value, 0, ckpt.Value / 1000);   // float tensors at 2 bytes, a few int ones unchanged
    }

    [SkippableFact]
    public void Mgie_counts_its_parts_and_a_request_over_the_free_memory_is_refused_with_a_hint()
    {
        Fixtures.Require();
        using var ckpt = new MgieTests.TinyCheckpoint();
        var family = ModelFamilies.Get("mgie");
        var request = Request("mgie", ckpt.Folder, ScalarType.Float32);
        var bytes = family.WeightBytes(request);
        Assert.NotNull(bytes);
        var paths = Elect.Pipelines.Mgie.MgiePaths.Resolve(ckpt.Folder);
        long unet = WeightFootprint.Bytes([new WeightSource(paths.Unet)], ScalarType.Float32);
        long llava = WeightFootprint.Bytes(WeightLoader.FindWeightFiles(paths.Llava).Select(f => new WeightSource(f)), ScalarType.Float32);
        Assert.True(bytes > unet + llava, $"{bytes} vs {unet} + {llava}");

        Assert.Equal(bytes, WeightMemory.Check(family, request, bytes, "the CPU"));        // exactly fits
        Assert.Equal(bytes, WeightMemory.Check(family, request, null, "the CPU"));         // free memory unknown: no check
        var e = Assert.Throws<InvalidOperationException>(() => WeightMemory.Check(family, request, bytes - 1, "the CPU (available RAM)"));
        Assert.Contains("not enough memory for the mgie weights", e.Message);
        Assert.Contains("Float32", e.Message);
        Assert.Contains("--dtype bf16", e.Message);
        Assert.Contains("the CPU (available RAM)", e.Message);
    }

    [Fact]
    public void Families_without_readable_files_give_no_estimate_and_the_load_reports_why()
    {
        Assert.Null(ModelFamilies.Get("demo").WeightBytes(Request("demo", ModelFamilies.DemoCheckpoint, ScalarType.Float32)));
        var missing = Path.Combine(Path.GetTempPath(), "elect-no-such-checkpoint-" + Guid.NewGuid().ToString("N"));
        foreach (var f in new[] { "instructpix2pix", "ultraedit", "mgie" })
            Assert.Null(WeightMemory.Check(ModelFamilies.Get(f), Request(f, missing, ScalarType.Float32), 1, "the CPU"));
    }
}
