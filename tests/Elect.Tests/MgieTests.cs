using System.Text.Json;
using Elect.Imaging;
using Elect.Modeling;
using Elect.Pipelines.Mgie;
using Elect.Selection;
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

    // ---- the tiny MGIE fixture (Data/mgie-tiny, reference goldens of scripts/goldens/mgie.py and mgie_elect.py) ----

    internal static string Tiny(params string[] parts) => Repo.Data(["mgie-tiny", .. parts]);

    /// <summary>The fixture's cases: input image (already resized), instruction, the reference's expressive instruction.</summary>
    internal static IReadOnlyList<(string Image, string Instruction, string Expressive, int Generated)> Cases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Repo.Data("mgie-tiny-manifest.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => (
            c.GetProperty("image").GetString()!, c.GetProperty("instruction").GetString()!,
            c.GetProperty("expressive_instruction").GetString()!,
            c.GetProperty("sequence_length").GetInt32() - c.GetProperty("prompt_length").GetInt32())).ToArray();
    }

    internal static Dictionary<string, Tensor> Golden(string file)
    {
        TorchRuntime.Initialize();
        var g = SafeTensors.Load(Repo.Data(file));
        foreach (var t in g.Values) t.DetachFromDisposeScope();
        return g;
    }

    private static readonly Lazy<Dictionary<string, Tensor>> LlmGolden = new(() => Golden("mgie-tiny-golden.safetensors"));
    private static readonly Lazy<Dictionary<string, Tensor>> EditGolden = new(() => Golden("mgie-elect-golden.safetensors"));

    /// <summary>
    /// A checkpoints/mgie folder in a temporary directory: the fixture's LLaVA-7B-v1, clip-vit-large-patch14 (linked) and
    /// mgie_7b (copied, so a test may replace a file), and ../shared/fixtures' ip2p-tiny as instruct-pix2pix.
    /// </summary>
    internal sealed class TinyCheckpoint : IDisposable
    {
        public TinyCheckpoint(bool withInstructPix2Pix = true)
        {
            Root = Directory.CreateTempSubdirectory("elect-mgie-").FullName;
            Folder = System.IO.Path.Combine(Root, "checkpoints", "mgie");
            Directory.CreateDirectory(System.IO.Path.Combine(Folder, "mgie_7b"));
            Directory.CreateSymbolicLink(System.IO.Path.Combine(Folder, MgiePaths.LlavaFolder), Tiny("LLaVA-7B-v1"));
            Directory.CreateSymbolicLink(System.IO.Path.Combine(Folder, "clip-vit-large-patch14"), Tiny("clip-vit-large-patch14"));
            foreach (var f in new[] { "mllm.pt", "unet.pt" })
                System.IO.File.Copy(Tiny("mgie_7b", f), System.IO.Path.Combine(Folder, "mgie_7b", f));
            if (withInstructPix2Pix)
                Directory.CreateSymbolicLink(System.IO.Path.Combine(Folder, MgiePaths.InstructPix2PixFolder), Fixtures.Ip2pTiny);
        }

        public string Root { get; }
        public string Folder { get; }
        public string File(string relative) => System.IO.Path.Combine(Folder, relative);

        public void Dispose()
        {
            try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>
    /// A stand-in for the multimodal LLM that hands out the reference's [IMG] states of the fixture's cases (by instruction):
    /// the editing half tested on its own.
    /// </summary>
    internal sealed class ReferenceStates : IMultimodalInstructor
    {
        public int HiddenSize => 64;

        public static IMultimodalInstructor Create(string llava, string vision, IReadOnlyDictionary<string, Tensor> mllm, Device device, ScalarType dtype)
        {
            Assert.True(mllm.ContainsKey("model.embed_tokens.weight") && mllm.ContainsKey("lm_head.weight"), "mllm.pt's LLM tensors are handed to the instructor");
            Assert.DoesNotContain(mllm.Keys, k => k.StartsWith("edit_head.", StringComparison.Ordinal) || k == "emb");
            return new ReferenceStates();
        }

        public InstructorOutput Instruct(RgbImage image, string instruction)
        {
            var cases = Cases();
            int k = cases.Select(c => c.Instruction).ToList().IndexOf(instruction);
            Assert.True(k >= 0, $"no fixture case for '{instruction}'");
            var sequences = LlmGolden.Value[$"case{k}.sequences"].data<long>().ToArray();
            return new InstructorOutput(LlmGolden.Value[$"case{k}.img_hidden"].clone(), cases[k].Expressive, sequences, sequences.Length - cases[k].Generated);
        }

        public void Dispose() { }
    }

    internal static RgbImage CaseImage(int k) => RgbImage.Load(Tiny("inputs", Cases()[k].Image));

    /// <summary>NULL and the prompt embeddings from the reference's [IMG] states through our edit head, against the reference's.</summary>
    [Fact]
    public void NullAndPromptEmbedsFromTheFixtureStatesMatchReference()
    {
        TorchRuntime.Initialize();
        using var scope = NewDisposeScope();
        var (head, emb) = MgieModel.LoadEditHead(Tiny("mgie_7b", "mllm.pt"), CPU, ScalarType.Float32, out var rest);
        using (head)
        {
            Assert.Equal(new EditMapperConfig(64, 32, 77, 64, 2, 2, 32), head.Config);
            Assert.Contains("model.embed_tokens.weight", rest.Keys);
            Assert.DoesNotContain(rest.Keys, k => k.StartsWith("edit_head.", StringComparison.Ordinal) || k == "emb");
            using var _ = no_grad();
            var g = LlmGolden.Value;
            TensorAssert.Close(g["null_prompt_embeds"], head.call(zeros(1, 8, 64), emb), 1e-4, "NULL");
            for (int k = 0; k < Cases().Count; k++)
                TensorAssert.Close(g[$"case{k}.prompt_embeds"], head.call(g[$"case{k}.img_hidden"], emb), 1e-4, $"case {k} prompt embeds");
        }
    }

    private static MgieModel LoadWithReferenceStates(TinyCheckpoint ckpt) => MgieModel.Load(ckpt.Folder, CPU, ScalarType.Float32, ReferenceStates.Create);

    /// <summary>Plain runs of both cases (the pipeline's __call__ with the MLLM's embeddings, one seed, 20 steps).</summary>
    [SkippableFact]
    public void PlainRunMatchesReference()
    {
        Fixtures.Require();
        using var ckpt = new TinyCheckpoint();
        using var model = LoadWithReferenceStates(ckpt);
        var engine = new ElectEngine(model);
        var g = EditGolden.Value;
        for (int k = 0; k < Cases().Count; k++)
        {
            using var scope = NewDisposeScope();
            var image = CaseImage(k);
            using var condition = model.Prepare(image, Cases()[k].Instruction);
            Assert.Equal(Cases()[k].Expressive, condition.Generated!.Text);
            using var result = engine.RunPlain(condition, [11], new EditOptions { InferenceSteps = 20 });
            TensorAssert.Close(g[$"case{k}.plain.seed11"], result.Images[11], 2e-3, $"case {k} plain seed 11");
            Ip2pPipelineTests.AssertImageClose(RgbImage.FromTensor(g[$"case{k}.plain.seed11"]).ToByteTensor(), result.Images[11], $"case {k} plain seed 11 (8-bit)");
            Assert.Equal(Cases()[k].Expressive, result.Generated!.Text);
            Assert.Equal(Cases()[k].Generated, result.Generated.GeneratedTokens);
            var json = Elect.Runner.JsonFiles.ToJson(Elect.Runner.EditReport.Create($"scene{k}", Cases()[k].Instruction, result, []));
            using var doc = JsonDocument.Parse(json);
            Assert.Equal(Cases()[k].Expressive, doc.RootElement.GetProperty("expressive_instruction").GetString());
            Assert.Equal(Cases()[k].Generated, doc.RootElement.GetProperty("generated_tokens").GetInt32());
        }
    }

    /// <summary>ELECT on both cases with the MLLM's embeddings: winner, BIS, relevance map and every image as the reference.</summary>
    [SkippableFact]
    public void ElectRunMatchesReference()
    {
        Fixtures.Require();
        using var ckpt = new TinyCheckpoint();
        using var model = LoadWithReferenceStates(ckpt);
        var engine = new ElectEngine(model);
        var g = EditGolden.Value;
        for (int k = 0; k < Cases().Count; k++)
        {
            using var scope = NewDisposeScope();
            using var condition = model.Prepare(CaseImage(k), Cases()[k].Instruction);
            AssertElectMatches(g, k, engine.RunElect(condition, Seeds(g, k), new EditOptions { InferenceSteps = 20 }, Selection));
        }
    }

    internal static readonly SelectionOptions Selection = new() { StoppingStep = 8, FirstMaskStep = 0, LastMaskStep = 4, KeepAllSeeds = true };

    internal static long[] Seeds(Dictionary<string, Tensor> g, int k) => g[$"case{k}.elect.seeds"].data<long>().ToArray();

    internal static void AssertElectMatches(Dictionary<string, Tensor> g, int k, EditResult result)
    {
        using (result)
        {
            var seeds = Seeds(g, k);
            Assert.Equal(g[$"case{k}.elect.best_seed"].data<long>()[0], result.BestSeed);
            var bis = g[$"case{k}.elect.bis"].data<double>().ToArray();
            for (int i = 0; i < seeds.Length; i++)
                Assert.True(Math.Abs(bis[i] - result.Bis![i]) <= 1e-4, $"case {k}: BIS of seed {seeds[i]}: {result.Bis![i]} vs {bis[i]}");
            TensorAssert.Close(g[$"case{k}.elect.relevance_map"], result.RelevanceMap!, 1e-4, $"case {k} relevance map");
            foreach (var seed in seeds)
                Ip2pPipelineTests.AssertImageClose(g[$"case{k}.elect.output-{seed}"], result.Images[seed], $"case {k} ELECT seed {seed}");
        }
    }

    [Fact]
    public void LoaderRefusesMissingParts()
    {
        TorchRuntime.Initialize();
        var root = Directory.CreateTempSubdirectory("elect-mgie-missing-").FullName;
        try
        {
            var folder = Path.Combine(root, "mgie");
            var e = Assert.Throws<DirectoryNotFoundException>(() => MgiePaths.Resolve(folder));
            Assert.Contains("MGIE checkpoint folder not found", e.Message);
            Directory.CreateDirectory(folder);
            var f = Assert.Throws<FileNotFoundException>(() => MgiePaths.Resolve(folder));
            Assert.Contains(Path.Combine(folder, "LLaVA-7B-v1", "config.json"), f.Message);
            Assert.Contains("--model-path", f.Message);
            Directory.CreateSymbolicLink(Path.Combine(folder, "LLaVA-7B-v1"), Tiny("LLaVA-7B-v1"));
            f = Assert.Throws<FileNotFoundException>(() => MgiePaths.Resolve(folder));
            Assert.Contains(Path.Combine(folder, "mgie_7b", "mllm.pt"), f.Message);
            Directory.CreateDirectory(Path.Combine(folder, "mgie_7b"));
            File.Copy(Tiny("mgie_7b", "mllm.pt"), Path.Combine(folder, "mgie_7b", "mllm.pt"));
            f = Assert.Throws<FileNotFoundException>(() => MgiePaths.Resolve(folder));
            Assert.Contains(Path.Combine(folder, "mgie_7b", "unet.pt"), f.Message);
            File.Copy(Tiny("mgie_7b", "unet.pt"), Path.Combine(folder, "mgie_7b", "unet.pt"));
            f = Assert.Throws<FileNotFoundException>(() => MgiePaths.Resolve(folder));
            Assert.Contains(Path.Combine(folder, "clip-vit-large-patch14", "config.json"), f.Message);
            Assert.Contains("openai/clip-vit-large-patch14", f.Message);
            Directory.CreateSymbolicLink(Path.Combine(folder, "clip-vit-large-patch14"), Tiny("clip-vit-large-patch14"));
            e = Assert.Throws<DirectoryNotFoundException>(() => MgiePaths.Resolve(folder));
            Assert.Contains(Path.Combine(folder, "instruct-pix2pix"), e.Message);
            Assert.Contains("instructpix2pix", e.Message);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>The InstructPix2Pix folder may be the instructpix2pix family's checkpoint beside checkpoints/mgie.</summary>
    [SkippableFact]
    public void InstructPix2PixFolderFallsBackToTheFamilyCheckpointBeside()
    {
        Fixtures.Require();
        using var ckpt = new TinyCheckpoint(withInstructPix2Pix: false);
        Directory.CreateSymbolicLink(Path.Combine(ckpt.Root, "checkpoints", "instructpix2pix"), Fixtures.Ip2pTiny);
        var paths = MgiePaths.Resolve(ckpt.Folder);
        Assert.Equal(Path.GetFullPath(Path.Combine(ckpt.Root, "checkpoints", "instructpix2pix")), Path.GetFullPath(paths.InstructPix2Pix));
        Assert.Equal(ckpt.File("clip-vit-large-patch14"), paths.VisionTower);
    }

    [SkippableTheory]
    [InlineData("mgie_7b/unet.pt", "tensors_p2.pt", "unexpected tensor")]
    [InlineData("mgie_7b/unet.pt", "evil_system.pt", "posix.system")]
    [InlineData("mgie_7b/mllm.pt", "evil_system.pt", "posix.system")]
    [InlineData("mgie_7b/mllm.pt", "tensors_p2.pt", "missing tensor 'emb'")]
    public void LoaderRefusesWrongOrCodeRunningPickles(string part, string replacement, string expected)
    {
        Fixtures.Require();
        using var ckpt = new TinyCheckpoint();
        File.Copy(Repo.Data("pickle", replacement), ckpt.File(part), overwrite: true);
        var e = Assert.ThrowsAny<Exception>(() => LoadWithReferenceStates(ckpt));
        Assert.IsAssignableFrom<InvalidDataException>(e);
        Assert.Contains(expected, e.Message);
        Assert.Contains(Path.GetFileName(part), e.Message);
    }

    [Fact]
    public void DownloadSaysWhatToPutWhere()
    {
        var (code, stdout, stderr) = CliHarness.Run("download", "mgie");
        Assert.True(code == 0, stderr);
        foreach (var part in new[] { "checkpoints/mgie", "LLaVA-7B-v1", "liuhaotian/LLaVA-Lightning-7B-delta-v1-1", "apply_delta",
                     "mgie_7b/mllm.pt", "mgie_7b/unet.pt", "mgie_7b.tar.gz", "docs-assets.developer.apple.com", "clip-vit-large-patch14", "instruct-pix2pix" })
            Assert.Contains(part, stdout);
    }

    [Fact]
    public void RunSingleRefusesAMissingCheckpointInOneLine()
    {
        var root = Directory.CreateTempSubdirectory("elect-mgie-cli-").FullName;
        try
        {
            var input = Path.Combine(root, "in.png");
            SampleImage.Create(64, 64).SavePng(input);
            Directory.CreateDirectory(Path.Combine(root, "mgie"));
            var (code, _, stderr) = CliHarness.Run("run-single", "--model", "mgie", "--model-path", Path.Combine(root, "mgie"), "--input", input,
                "--instruction", "make it blue", "--device", "cpu", "--output-dir", Path.Combine(root, "out"), "--log-level", "warning");
            Assert.Equal(1, code);
            var line = stderr.Trim();
            Assert.DoesNotContain('\n', line);
            Assert.StartsWith("elect: error: missing " + Path.Combine(root, "mgie", "LLaVA-7B-v1", "config.json"), line);
            Assert.Contains("--model-path", line);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    // ---- the whole chain: image + instruction -> LLaVA (LlavaInstructor) -> edit head -> plain / ELECT ----

    /// <summary>The mgie family as registered (LlavaInstructor), on the tiny checkpoint: ELECT and plain runs equal the goldens.</summary>
    [SkippableFact]
    public void FullChainThroughTheFamilyMatchesReference()
    {
        Fixtures.Require();
        using var ckpt = new TinyCheckpoint();
        using var editor = Editor.Load(ckpt.Folder, "mgie", CPU, ScalarType.Float32);
        Assert.IsType<MgieModel>(editor.Model);
        var g = EditGolden.Value;
        for (int k = 0; k < Cases().Count; k++)
        {
            using var scope = NewDisposeScope();
            var image = CaseImage(k);
            var result = editor.Edit(image, Cases()[k].Instruction, Seeds(g, k), new EditOptions { InferenceSteps = 20 }, Selection);
            Assert.Equal(Cases()[k].Expressive, result.Generated!.Text);
            Assert.Equal(Cases()[k].Generated, result.Generated.GeneratedTokens);
            AssertElectMatches(g, k, result);
            using var plain = editor.Edit(image, Cases()[k].Instruction, [11], new EditOptions { InferenceSteps = 20 });
            TensorAssert.Close(g[$"case{k}.plain.seed11"], plain.Images[11], 2e-3, $"case {k} plain seed 11 (whole chain)");
        }
    }

    /// <summary><c>elect run-single --model mgie</c> end to end on the tiny checkpoint: outputs as the reference, the expressive instruction in the report.</summary>
    [SkippableFact]
    public void RunSingleEndToEndWritesTheExpressiveInstruction()
    {
        Fixtures.Require();
        using var ckpt = new TinyCheckpoint();
        var outDir = Path.Combine(ckpt.Root, "out");
        var report = Path.Combine(ckpt.Root, "report.json");
        var g = EditGolden.Value;
        var (code, stdout, stderr) = CliHarness.Run("run-single", "--model", "mgie", "--model-path", ckpt.Folder, "--input", Tiny("inputs", Cases()[0].Image),
            "--instruction", Cases()[0].Instruction, "--resolution", "128", "--inference-steps", "20", "--select-one-seed",
            "--candidate-seeds", "11", "22", "33", "44", "--stopping-step", "8", "--last-step-for-mask-extraction", "4", "--visualize-all-seeds",
            "--device", "cpu", "--output-dir", outDir, "--report", report, "--log-level", "warning");
        Assert.True(code == 0, stderr);
        foreach (var seed in Seeds(g, 0))
        {
            var file = Path.Combine(outDir, $"scene0_output_{seed}.png");
            Assert.Contains(file, stdout);
            using var png = RgbImage.Load(file).ToByteTensor();
            Ip2pPipelineTests.AssertImageClose(g[$"case0.elect.output-{seed}"], png, $"cli seed {seed}");
        }
        using var doc = JsonDocument.Parse(File.ReadAllText(report));
        var root = doc.RootElement;
        Assert.Equal("mgie", root.GetProperty("model").GetString());
        Assert.Equal(Cases()[0].Instruction, root.GetProperty("instruction").GetString());
        Assert.Equal(Cases()[0].Expressive, root.GetProperty("expressive_instruction").GetString());
        Assert.Equal(Cases()[0].Generated, root.GetProperty("generated_tokens").GetInt32());
        Assert.Equal(g["case0.elect.best_seed"].data<long>()[0], root.GetProperty("best_seed").GetInt64());
    }

    /// <summary><c>elect run-dataset --model mgie</c>: each item's report and summary.json carry what the LLM wrote for it.</summary>
    [SkippableFact]
    public void RunDatasetRecordsEachItemsExpressiveInstruction()
    {
        Fixtures.Require();
        using var ckpt = new TinyCheckpoint();
        var data = Path.Combine(ckpt.Root, "data");
        Directory.CreateDirectory(data);
        var items = Cases().Select((c, k) => (Key: $"item{k}", c.Image, c.Instruction)).ToArray();
        File.WriteAllText(Path.Combine(data, "dataset.json"), JsonSerializer.Serialize(items.ToDictionary(
            i => i.Key, i => new Dictionary<string, string> { ["image_path"] = Tiny("inputs", i.Image), ["editing_instruction"] = i.Instruction })));
        var outDir = Path.Combine(ckpt.Root, "out");
        var (code, _, stderr) = CliHarness.Run("run-dataset", "--model", "mgie", "--model-path", ckpt.Folder, "--dataset-dir", data,
            // 128 leaves both inputs as they are (the shorter side rounds up to 128, so 192x128 stays), as the reference's cases
            "--resolution", "128", "--inference-steps", "4", "--select-one-seed", "--candidate-seeds", "1", "2", "--stopping-step", "2",
            "--last-step-for-mask-extraction", "1", "--device", "cpu", "--output-dir", outDir, "--log-level", "warning");
        Assert.True(code == 0, stderr);
        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "summary.json")));
        var results = summary.RootElement.GetProperty("results").EnumerateArray().ToArray();
        Assert.Equal(items.Length, results.Length);
        for (int k = 0; k < items.Length; k++)
        {
            Assert.Equal(Cases()[k].Expressive, results[k].GetProperty("expressive_instruction").GetString());
            Assert.Equal(Cases()[k].Generated, results[k].GetProperty("generated_tokens").GetInt32());
            using var report = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, $"item{k}_report.json")));
            Assert.Equal(Cases()[k].Expressive, report.RootElement.GetProperty("expressive_instruction").GetString());
        }
    }

    /// <summary>An MGIE edit (the LLM's generation included) leaves no live tensor behind.</summary>
    [SkippableFact]
    public void EditsLeaveNoLiveTensors()
    {
        Fixtures.Require();
        using var ckpt = new TinyCheckpoint();
        using var editor = Editor.Load(ckpt.Folder, "mgie", CPU, ScalarType.Float32);
        var input = CaseImage(0);
        void EditOnce(int k)
        {
            using var result = editor.Edit(input, Cases()[0].Instruction, [1, 2], new EditOptions { InferenceSteps = 4 },
                new SelectionOptions { StoppingStep = 2, LastMaskStep = 1 });
        }
        LeakCheck.NoTensorsLeftAlive(EditOnce, 3);
    }
}
