using System.Text.Json;
using Elect.Imaging;
using Elect.Modeling;
using Elect.Models.Language;
using Elect.Pipelines.Mgie;
using Elect.Text;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

/// <summary>
/// MGIE's multimodal LLM (LLaVA-7B + MGIE's [IMG] tokens) against the reference goldens of
/// scripts/goldens/mgie.py (ELECT's mgie_module.py path over transformers 5.12) on the committed tiny fixture
/// (Data/mgie-tiny). Everything here needs only committed data.
/// </summary>
public class MgieLlavaTests
{
    internal static string Dir(params string[] parts) => Repo.Data(["mgie-tiny", .. parts]);

    /// <summary>The tokenizer as MGIE_module.__init__ leaves it: the folder, [IMG0..7], then the image tokens again.</summary>
    internal static LlamaTokenizer MgieTokenizer()
    {
        var t = LlamaTokenizer.FromFolder(Dir("LLaVA-7B-v1"));
        t.AddTokens(Enumerable.Range(0, 8).Select(i => $"[IMG{i}]"), specialTokens: true);
        t.AddTokens(["<im_patch>"], specialTokens: true);
        t.AddTokens(["<im_start>", "<im_end>"], specialTokens: true);
        return t;
    }

    [Fact]
    public void Tokenizer_ids_and_decode_equal_transformers_on_the_corpus()
    {
        var tok = MgieTokenizer();
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Repo.Data("mgie-tiny-tokenizer.json")));
        int n = 0, bad = 0;
        var failures = new List<string>();
        foreach (var e in doc.RootElement.GetProperty("encode").EnumerateArray())
        {
            var text = e.GetProperty("text").GetString()!;
            var want = e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            var got = tok.Encode(text).ToArray();
            n++;
            if (!got.SequenceEqual(want))
            {
                bad++;
                if (failures.Count < 5) failures.Add($"{JsonSerializer.Serialize(text)}: want [{string.Join(",", want)}] got [{string.Join(",", got)}]");
            }
        }
        foreach (var e in doc.RootElement.GetProperty("decode").EnumerateArray())
        {
            var ids = e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            var want = e.GetProperty("text").GetString()!;
            var got = tok.Decode(ids);
            n++;
            if (got != want)
            {
                bad++;
                if (failures.Count < 10) failures.Add($"decode [{string.Join(",", ids)}]: want {JsonSerializer.Serialize(want)} got {JsonSerializer.Serialize(got)}");
            }
        }
        Assert.True(n > 400, $"only {n} cases");
        Assert.True(bad == 0, $"{bad} of {n} differ:\n" + string.Join("\n", failures));
        Assert.Equal(1011, tok.Count);
        Assert.Equal(1003, tok.TokenId("[IMG0]"));
        Assert.Equal(1000, tok.TokenId("<im_patch>"));
    }

    [Fact]
    public void Tokenizer_folders_other_than_LLaVA_are_refused()
    {
        var tmp = Directory.CreateTempSubdirectory("elect-llama-tok-");
        try
        {
            foreach (var f in Directory.GetFiles(Dir("LLaVA-7B-v1"), "*.json").Append(Dir("LLaVA-7B-v1", "tokenizer.model")))
                File.Copy(f, Path.Combine(tmp.FullName, Path.GetFileName(f)));
            var config = Path.Combine(tmp.FullName, "config.json");
            // transformers 5.12 loads a model_type "llama" folder as LlamaTokenizer: "hello" -> [1, 386 ('▁he'), ...], not [1, 260 ('he'), ...]
            File.WriteAllText(config, File.ReadAllText(config).Replace("\"model_type\": \"llava\"", "\"model_type\": \"llama\""));
            Assert.Contains("model_type", Assert.Throws<NotSupportedException>(() => LlamaTokenizer.FromFolder(tmp.FullName)).Message);
            File.Delete(config);
            Assert.Contains("absent", Assert.Throws<NotSupportedException>(() => LlamaTokenizer.FromFolder(tmp.FullName)).Message);
            File.WriteAllText(Path.Combine(tmp.FullName, "tokenizer.json"), "{}");
            Assert.Contains("tokenizer.json", Assert.Throws<NotSupportedException>(() => LlamaTokenizer.FromFolder(tmp.FullName)).Message);
        }
        finally { tmp.Delete(true); }
        Assert.Equal([1L, 260, 290, 730, 269, 320, 592], MgieTokenizer().Encode("hello world"));
    }

    private static readonly Lazy<Dictionary<string, Tensor>> GoldenLazy = new(() =>
    {
        TorchRuntime.Initialize();
        var g = SafeTensors.Load(Repo.Data("mgie-tiny-golden.safetensors"));
        foreach (var t in g.Values) t.DetachFromDisposeScope();   // first touched inside a test's scope
        return g;
    });

    private static Dictionary<string, Tensor> Golden => GoldenLazy.Value;

    private static readonly Lazy<JsonElement> ManifestLazy = new(() =>
        JsonDocument.Parse(File.ReadAllBytes(Repo.Data("mgie-tiny-manifest.json"))).RootElement.Clone());

    private static JsonElement Case(int k) => ManifestLazy.Value.GetProperty("cases")[k];

    internal static Dictionary<string, Tensor> Mllm() => Checkpoint.ReadTensors(Dir("mgie_7b", "mllm.pt"));

    private static readonly Lazy<LlavaInstructor> InstructorLazy = new(() =>
    {
        TorchRuntime.Initialize();
        var mllm = Mllm();
        try { return LlavaInstructor.Load(Dir("LLaVA-7B-v1"), Dir("clip-vit-large-patch14"), mllm, CPU, ScalarType.Float32); }
        finally { foreach (var t in mllm.Values) t.Dispose(); }
    });

    private static LlavaInstructor Instructor => InstructorLazy.Value;   // first touched before any dispose scope

    private static RgbImage Input(int k) => RgbImage.Load(Dir("inputs", Case(k).GetProperty("image").GetString()!));

    private static double MaxDiff(Tensor a, Tensor b)
    {
        Assert.Equal(b.shape, a.shape);
        using var scope = torch.NewDisposeScope();
        return (a.to(ScalarType.Float64).cpu() - b.to(ScalarType.Float64).cpu()).abs().max().item<double>();
    }

    private static void Close(Tensor got, Tensor want, double tol, string what)
    {
        double d = MaxDiff(got, want);
        Assert.True(d <= tol, $"{what}: max |diff| {d:g3} > {tol:g3}");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Prompt_and_input_ids_equal_the_reference(int k)
    {
        var c = Case(k);
        var prompt = LlavaInstructor.BuildPrompt(c.GetProperty("instruction").GetString()!, 16);
        Assert.Equal(c.GetProperty("prompt").GetString(), prompt);
        var ids = MgieTokenizer().Encode(prompt);
        Assert.Equal(Golden[$"case{k}.input_ids"].data<long>().ToArray(), ids.ToArray());
    }

    [Fact]
    public void Llama_one_pass_logits_and_hidden_states_match_transformers()
    {
        using var llm = LlamaForCausalLM.FromPretrained(Dir("LLaVA-7B-v1"));
        var mllm = Mllm();
        llm.ReplaceVocabulary(mllm["model.embed_tokens.weight"], mllm["lm_head.weight"]);
        foreach (var t in mllm.Values) t.Dispose();
        Assert.Equal(1011, llm.VocabSize);
        for (int k = 0; k < 2; k++)
        {
            using var scope = torch.NewDisposeScope();
            using var _ = torch.no_grad();
            var states = new List<Tensor>();
            var (hidden, logits) = llm.Forward(Golden[$"case{k}.inputs_embeds"], hiddenStates: states);
            Close(logits[0], Golden[$"case{k}.logits"], 1e-4, $"case{k} logits");
            Assert.Equal(3, states.Count);
            for (int i = 0; i < states.Count; i++) Close(states[i][0], Golden[$"case{k}.prompt_hidden_states.{i}"], 1e-4, $"case{k} hidden_states[{i}]");
            Close(hidden[0], Golden[$"case{k}.prompt_hidden_states.2"], 1e-4, $"case{k} last hidden");
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Vision_features_projection_and_splice_match_the_reference(int k)
    {
        _ = Instructor;
        using var scope = torch.NewDisposeScope();
        var pixels = Instructor.PixelValues(Input(k));
        Close(pixels, Golden[$"case{k}.pixel_values"], 1e-5, "pixel_values");
        var vision = Instructor.VisionFeatures(Golden[$"case{k}.pixel_values"]);
        Close(vision, Golden[$"case{k}.vision_select"], 1e-4, "hidden_states[-2][:, 1:]");
        var features = Instructor.ImageFeatures(Golden[$"case{k}.vision_select"]);
        Close(features, Golden[$"case{k}.image_features"], 1e-4, "mm_projector");
        var ids = Golden[$"case{k}.input_ids"].data<long>().ToArray();
        var embeds = Instructor.SpliceEmbeddings(ids, Golden[$"case{k}.image_features"]);
        Close(embeds, Golden[$"case{k}.inputs_embeds"], 1e-6, "spliced inputs_embeds");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Greedy_generation_matches_transformers_generate(int k)
    {
        _ = Instructor;
        using var scope = torch.NewDisposeScope();
        var ids = Golden[$"case{k}.input_ids"].data<long>().ToArray();
        var embeds = Instructor.SpliceEmbeddings(ids, Golden[$"case{k}.image_features"]);
        var llm = typeof(LlavaInstructor).GetField("_llm", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(Instructor) as LlamaForCausalLM;
        using var result = GreedyGeneration.Generate(llm!, ids, embeds, Instructor.Generation);
        Assert.Equal(Golden[$"case{k}.sequences"].data<long>().ToArray(), result.Sequence);
        Close(result.LastHiddenStates, Golden[$"case{k}.hidden"], 1e-4, "concatenated last-layer hidden states");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void Instruct_gives_the_reference_sequence_text_and_img_hidden_states(int k)
    {
        var c = Case(k);
        using var output = Instructor.Instruct(Input(k), c.GetProperty("instruction").GetString()!);
        Assert.Equal(Golden[$"case{k}.sequences"].data<long>().ToArray(), output.SequenceIds);
        Assert.Equal(c.GetProperty("prompt_length").GetInt32(), output.PromptLength);
        Assert.Equal(c.GetProperty("expressive_instruction").GetString(), output.ExpressiveInstruction);
        Assert.Equal(c.GetProperty("generated_text").GetString(), Instructor.Tokenizer.Decode(output.SequenceIds));
        Assert.Equal(ScalarType.Float32, output.ImageTokenStates.dtype);
        Close(output.ImageTokenStates, Golden[$"case{k}.img_hidden"], 1e-4, "hid[p:p+8]");
        // case 0 takes MGIE's [IMG0]-found path, case 1 the len(hid) - 9 fallback
        Assert.Equal(k == 0, c.GetProperty("img0_found").GetBoolean());
        Assert.Equal(c.GetProperty("p").GetInt32(),
            LlavaInstructor.SelectImageTokenStart(output.SequenceIds, output.SequenceIds.Length - 1, Instructor.Img0Id));
    }

    [Fact]
    public void Instruct_in_float16_follows_the_same_path_and_leaves_no_tensors_alive()
    {
        // the published model runs in fp16 (on CUDA); on the CPU the tiny fixture's chain of tokens survives fp16 rounding
        var mllm = Mllm();
        using var fp16 = LlavaInstructor.Load(Dir("LLaVA-7B-v1"), Dir("clip-vit-large-patch14"), mllm, CPU, ScalarType.Float16);
        foreach (var t in mllm.Values) t.Dispose();
        var image = Input(0);
        var instruction = Case(0).GetProperty("instruction").GetString()!;
        LeakCheck.NoTensorsLeftAlive(_ =>
        {
            using var output = fp16.Instruct(image, instruction);
            Assert.Equal(Golden["case0.sequences"].data<long>().ToArray(), output.SequenceIds);
            Assert.Equal(ScalarType.Float32, output.ImageTokenStates.dtype);
            Close(output.ImageTokenStates, Golden["case0.img_hidden"], 2e-2, "fp16 hid[p:p+8]");
        }, 1);
    }

    [Fact]
    public void Instructor_ids_and_sizes()
    {
        var m = ManifestLazy.Value;
        Assert.Equal(m.GetProperty("img0_id").GetInt64(), Instructor.Img0Id);
        Assert.Equal(m.GetProperty("im_patch_id").GetInt64(), Instructor.ImagePatchId);
        Assert.Equal(m.GetProperty("im_start_id").GetInt64(), Instructor.ImageStartId);
        Assert.Equal(m.GetProperty("im_end_id").GetInt64(), Instructor.ImageEndId);
        Assert.Equal(m.GetProperty("image_token_len").GetInt32(), Instructor.ImageTokenLength);
        Assert.Equal(64, Instructor.HiddenSize);
        Assert.Equal([2L], Instructor.Generation.EosTokenIds);
        Assert.Equal(96, Instructor.Generation.MaxNewTokens);
        Assert.Equal(3, Instructor.Generation.NoRepeatNgramSize);
    }

    [Fact]
    public void Selection_rule_takes_the_token_before_IMG0_or_the_last_nine()
    {
        const long img0 = 1003;
        // [IMG0] at index 6 of 20 ids (19 hidden rows): p = min(5, 10) = 5
        var found = Enumerable.Range(0, 20).Select(i => i == 6 ? img0 : 5L + i).ToArray();
        Assert.Equal(5, LlavaInstructor.SelectImageTokenStart(found, 19, img0));
        // [IMG0] too late to leave 8 rows: the fallback bounds it
        var late = Enumerable.Range(0, 20).Select(i => i == 17 ? img0 : 5L + i).ToArray();
        Assert.Equal(10, LlavaInstructor.SelectImageTokenStart(late, 19, img0));
        // no [IMG0]: len(hid) - 9
        var none = Enumerable.Range(0, 20).Select(i => 5L + i).ToArray();
        Assert.Equal(10, LlavaInstructor.SelectImageTokenStart(none, 19, img0));
        Assert.Throws<InvalidOperationException>(() => LlavaInstructor.SelectImageTokenStart(none[..5], 4, img0));
    }

    [Theory]
    [InlineData("<s>A chat USER: x ASSISTANT: make it blue[IMG0][IMG1].</s>", "make it blue.")]
    [InlineData("ASSISTANT:  First. Second.  Third.</s>junk", "First.Second.")]
    [InlineData("ASSISTANT: a red car, Alternatively a blue one", "a red car,.")]
    [InlineData("ASSISTANT: x \u0130\u0130 alternative y", "x \u0130\u0130 al.")]   // as Python: the cut index comes from the longer lowered string
    [InlineData("ASSISTANT: no dot at all", "no dot at all.")]
    [InlineData("ASSISTANT:\x1c trailing \x1f", "trailing.")]
    [InlineData("ASSISTANT: </s>", ".")]
    [InlineData("", ".")]
    public void RemoveAlter_as_mgie_module(string input, string expected)
    {
        static string U(string s) => System.Text.RegularExpressions.Regex.Unescape(s);
        Assert.Equal(U(expected), LlavaInstructor.RemoveAlter(U(input)));
    }

    [Fact]
    public void Sharded_bin_and_safetensors_shards_load_the_same_weights()
    {
        var tmp = Directory.CreateTempSubdirectory("elect-llava-st-");
        try
        {
            foreach (var f in new[] { "config.json" }) File.Copy(Dir("LLaVA-7B-v1", f), Path.Combine(tmp.FullName, f));
            foreach (var f in Directory.GetFiles(Dir("LLaVA-7B-v1-safetensors"))) File.Copy(f, Path.Combine(tmp.FullName, Path.GetFileName(f)));
            using var a = LlamaForCausalLM.FromPretrained(Dir("LLaVA-7B-v1"));
            using var b = LlamaForCausalLM.FromPretrained(tmp.FullName);
            var sa = a.state_dict();
            var sb = b.state_dict();
            Assert.Equal(sa.Keys.OrderBy(x => x), sb.Keys.OrderBy(x => x));
            Assert.Contains("model.mm_projector.weight", sa.Keys);
            Assert.Contains("model.layers.1.mlp.down_proj.weight", sa.Keys);
            foreach (var key in sa.Keys) Assert.True(MaxDiff(sa[key], sb[key]) == 0, key);
        }
        finally { tmp.Delete(true); }
    }

    [Fact]
    public void Missing_shard_missing_tables_and_unsupported_config_are_refused()
    {
        var tmp = Directory.CreateTempSubdirectory("elect-llava-bad-");
        try
        {
            foreach (var f in Directory.GetFiles(Dir("LLaVA-7B-v1"))) File.Copy(f, Path.Combine(tmp.FullName, Path.GetFileName(f)));
            File.Delete(Path.Combine(tmp.FullName, "pytorch_model-00002-of-00002.bin"));
            var e1 = Assert.Throws<FileNotFoundException>(() => LlamaForCausalLM.FromPretrained(tmp.FullName));
            Assert.Contains("pytorch_model-00002-of-00002.bin", e1.Message);

            var mllm = Mllm();
            try
            {
                var noEmbed = mllm.Where(kv => kv.Key != "model.embed_tokens.weight").ToDictionary(kv => kv.Key, kv => kv.Value);
                var e2 = Assert.Throws<InvalidDataException>(() => LlavaInstructor.Load(Dir("LLaVA-7B-v1"), Dir("clip-vit-large-patch14"), noEmbed, CPU, ScalarType.Float32));
                Assert.Contains("model.embed_tokens.weight", e2.Message);
                using var shortHead = mllm["lm_head.weight"][..1003];
                var wrong = new Dictionary<string, Tensor>(mllm) { ["lm_head.weight"] = shortHead };
                var e3 = Assert.Throws<InvalidDataException>(() => LlavaInstructor.Load(Dir("LLaVA-7B-v1"), Dir("clip-vit-large-patch14"), wrong, CPU, ScalarType.Float32));
                Assert.Contains("lm_head.weight", e3.Message);
                Assert.Contains("1011", e3.Message);
            }
            finally { foreach (var t in mllm.Values) t.Dispose(); }

            var config = Path.Combine(tmp.FullName, "config.json");
            var json = File.ReadAllText(config);
            File.WriteAllText(config, json.Replace("\"rope_theta\"", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0},\n  \"rope_theta\""));
            var e4 = Assert.Throws<NotSupportedException>(() => LlamaConfig.Load(config));
            Assert.Contains("rope_scaling", e4.Message);
            File.WriteAllText(config, json.Replace("\"silu\"", "\"gelu\""));
            var e5 = Assert.Throws<NotSupportedException>(() => LlamaConfig.Load(config));
            Assert.Contains("hidden_act", e5.Message);
            File.WriteAllText(config, json.Replace("\"rope_theta\"", "\"attention_bias\": true,\n  \"rope_theta\""));
            Assert.Contains("attention_bias", Assert.Throws<NotSupportedException>(() => LlamaConfig.Load(config)).Message);
        }
        finally { tmp.Delete(true); }
    }
}

/// <summary>
/// MGIE's LLM at the published width (LLaVA-7B-v1's LLaMA cut to 2 layers, + mm_projector; the clip-vit-large-patch14
/// vision tower cut to 3 layers) with <see cref="SeededInit"/> weights against transformers 5.12
/// (scripts/goldens/mgie_published_sizes.py, Data/published-sizes/llava-7b-v1-llama / clip-vit-large-patch14-vision):
/// max |diff| &lt;= 1e-4 x max |golden|. About 0.67 B parameters (2.7 GB in float32); needs only committed data.
/// </summary>
[Collection("PublishedSize")]
[Trait("Category", "PublishedSize")]
public sealed class MgieLlavaPublishedSizeTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Meta) Golden(string name)
    {
        var path = Repo.Data("published-sizes", name + ".safetensors");
        using var f = File.OpenRead(path);
        var len = new byte[8];
        f.ReadExactly(len);
        var header = new byte[BitConverter.ToInt64(len)];
        f.ReadExactly(header);
        using var doc = JsonDocument.Parse(header);
        var meta = doc.RootElement.GetProperty("__metadata__").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        return (SafeTensors.Load(path), meta);
    }

    private static ModelConfig Cut(string name, string? section, string key, int value)
    {
        var path = Repo.Data("published-configs", name, "config.json");
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        var target = section is null ? node : node[section]!.AsObject();
        target[key] = value;
        using var doc = JsonDocument.Parse(node.ToJsonString());
        return new ModelConfig(section is null ? doc.RootElement : doc.RootElement.GetProperty(section), $"{path} (cut: {key}={value})");
    }

    private void Fill(nn.Module module, Dictionary<string, string> meta)
    {
        var (count, sha) = SeededInit.Fill(module, long.Parse(meta["seed"]));
        Assert.Equal(meta["params_count"], count.ToString());
        Assert.Equal(meta["params_sha256"], sha);
    }

    private void Close(Tensor expected, Tensor actual, string key, int stride = 1)
    {
        using var scope = torch.NewDisposeScope();
        var a = actual.detach().cpu().to(ScalarType.Float64);
        if (stride > 1) a = a.slice(-1, 0, a.shape[^1], stride);
        var e = expected.to(ScalarType.Float64);
        Assert.True(e.shape.SequenceEqual(a.shape), $"{key}: shape [{string.Join(",", a.shape)}], golden [{string.Join(",", e.shape)}]");
        double maxDiff = (e - a).abs().max().item<double>(), maxRef = e.abs().max().item<double>();
        output.WriteLine($"{key}: max |diff| = {maxDiff:G3} (max |golden| {maxRef:G3}, relative {maxDiff / maxRef:G3})");
        Assert.True(maxDiff <= 1e-4 * maxRef, $"{key}: max |diff| = {maxDiff:G4} > 1e-4 x max |golden| {maxRef:G4}");
    }

    [Fact]
    public void Llava7bLlamaMatchesTransformers()
    {
        TorchRuntime.Initialize();
        var (g, meta) = Golden("llava-7b-v1-llama");
        var cfg = LlamaConfig.From(Cut("llava-7b-v1", null, "num_hidden_layers", 2));
        Assert.Equal(128, cfg.HeadDim);
        using var llm = new LlamaForCausalLM(cfg);
        Fill(llm, meta);
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var ids = g["input_ids"];
        var states = new List<Tensor>();
        var (_, logits) = llm.Forward(llm.Embed(ids), hiddenStates: states);
        Close(g["logits"], logits[0], "logits", 4);
        for (int i = 0; i < states.Count; i++) Close(g[$"hidden_states.{i}"], states[i][0], $"hidden_states.{i}", 8);
        Close(g["projected"], llm.Project(g["features"]), "mm_projector", 8);
        // the KV-cache path: 8 ids at once, then one at a time, against the full pass
        using var cache = new LlamaKvCache(cfg.NumHiddenLayers);
        var (_, first) = llm.Forward(llm.Embed(ids[.., ..8]), cache, lastLogitsOnly: true);
        Close(g["logits"][7], first[0, 0], "cached logits[7]", 4);
        for (int t = 8; t < 12; t++)
        {
            var (_, step) = llm.Forward(llm.Embed(ids[.., t..(t + 1)]), cache, lastLogitsOnly: true);
            Close(g["logits"][t], step[0, 0], $"cached logits[{t}]", 4);
            if (t == 11) Close(g["logits_last"], step[0, 0], "cached logits_last");
        }
        foreach (var t in g.Values) t.Dispose();
    }

    [Fact]
    public void ClipLargeVisionSelectLayerMatchesTransformers()
    {
        TorchRuntime.Initialize();
        var (g, meta) = Golden("clip-vit-large-patch14-vision");
        var vc = Cut("clip-vit-large-patch14", "vision_config", "num_hidden_layers", 3);
        var cfg = Elect.Models.Vision.ClipVisionConfig.From(vc) with { ProjectionDim = 768 };
        using var vision = new Elect.Models.Vision.ClipVisionModel(cfg);
        Fill(vision, meta);
        using var _ = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        using var gen = new Generator(ulong.Parse(meta["seed"]) + 1);
        var pixels = torch.randn([1, 3, 224, 224], generator: gen);
        Close(g["select"], vision.HiddenState(pixels, -2)[.., 1..], "hidden_states[-2][:, 1:]", 8);
        Close(g["embeddings"], vision.HiddenState(pixels, 0), "hidden_states[0]", 8);
        foreach (var t in g.Values) t.Dispose();
    }
}
