using System.Text;
using System.Text.Json;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using Elect.Models.TextEncoders;
using Elect.Models.Unets;
using Elect.Pipelines.InstructPix2Pix;
using TorchSharp;
using static TorchSharp.torch;

namespace Elect.Pipelines.Demo;

/// <summary>
/// The <c>demo</c> family: a tiny InstructPix2Pix-style pipeline (CLIP BPE tokenizer with a byte-level vocabulary
/// and a few merges, 2-layer CLIP text encoder, 4-level UNet with 8 input channels, VAE) with seeded random
/// weights, so that the CLI runs end to end on a fresh clone with no checkpoint. The edit means nothing.
/// <see cref="WriteFolder"/> writes it as a diffusers pipeline folder; the family loads that folder with the
/// instructpix2pix loader, so the demo exercises the same code path as a real checkpoint.
/// </summary>
public static class DemoModel
{
    /// <summary>The warning every load of the demo model logs.</summary>
    public const string Warning = "demo model: random weights, the edit means nothing (download a real checkpoint: elect download instructpix2pix)";

    /// <summary>The default seed of the demo weights.</summary>
    public const long DefaultSeed = 20250417;

    private const string UnetConfig = """
    {
      "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
      "block_out_channels": [32, 32, 64, 64], "center_input_sample": false, "cross_attention_dim": 32,
      "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 8, "layers_per_block": 2,
      "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 16,
      "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    }
    """;

    private const string VaeConfig = """
    {
      "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [32, 32, 64, 64],
      "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
      "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
      "sample_size": 128, "scaling_factor": 0.18215,
      "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
    }
    """;

    private const string ModelIndex = """
    {
      "_class_name": "StableDiffusionInstructPix2PixPipeline", "_elect_demo": "random weights: the edit means nothing",
      "feature_extractor": [null, null], "requires_safety_checker": false, "safety_checker": [null, null],
      "scheduler": ["diffusers", "EulerAncestralDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
      "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]
    }
    """;

    private const string TokenizerConfig = """
    {
      "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
      "model_max_length": 77, "do_lower_case": true, "errors": "replace", "tokenizer_class": "CLIPTokenizer", "add_prefix_space": false
    }
    """;

    private const string SpecialTokens = """
    { "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>" }
    """;

    /// <summary>A few merges over the byte-level base vocabulary (enough to exercise BPE; the rest falls back to bytes).</summary>
    private static readonly (string A, string B)[] Merges =
    [
        ("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("in", "g</w>"), ("o", "n</w>"), ("e", "r"),
        ("h", "o"), ("u", "s"), ("us", "e</w>"), ("c", "a"), ("s", "t"), ("l", "e</w>"), ("t", "o</w>"), ("i", "n</w>"),
    ];

    /// <summary>GPT-2 / CLIP's byte-to-unicode table: printable bytes map to themselves, the others to U+0100 onwards.</summary>
    private static string[] ByteChars()
    {
        var printable = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToHashSet();
        var chars = new string[256];
        int next = 256;
        for (int b = 0; b < 256; b++) chars[b] = ((char)(printable.Contains(b) ? b : next++)).ToString();
        return chars;
    }

    /// <summary>vocab.json's entries in CLIP's order: the byte characters, the same with <c>&lt;/w&gt;</c>, the merges, the two special tokens.</summary>
    private static List<string> Vocabulary()
    {
        var bytes = ByteChars();
        var vocab = new List<string>(bytes);
        vocab.AddRange(bytes.Select(c => c + "</w>"));
        vocab.AddRange(Merges.Select(m => m.A + m.B));
        vocab.Add("<|startoftext|>");
        vocab.Add("<|endoftext|>");
        return vocab;
    }

    /// <summary>
    /// Writes the demo pipeline as a diffusers folder (model_index.json, scheduler, tokenizer, text_encoder, unet, vae;
    /// float32 safetensors, about 10 MB), its weights drawn from torch's default initialisers under
    /// <paramref name="seed"/> (the same bytes on every run).
    /// </summary>
    public static void WriteFolder(string dir, long seed = DefaultSeed)
    {
        void Text(string rel, string content)
        {
            var path = Path.Combine(dir, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, content.Trim() + "\n");
        }
        var vocab = Vocabulary();
        Text("model_index.json", ModelIndex);
        Text("scheduler/scheduler_config.json", InstructPix2PixModel.SchedulerConfigJson);
        Text("tokenizer/tokenizer_config.json", TokenizerConfig);
        Text("tokenizer/special_tokens_map.json", SpecialTokens);
        Text("tokenizer/vocab.json", JsonSerializer.Serialize(vocab.Select((t, i) => (t, i)).ToDictionary(x => x.t, x => x.i)));
        Text("tokenizer/merges.txt", "#version: 0.2\n" + string.Join("\n", Merges.Select(m => $"{m.A} {m.B}")));
        int bos = vocab.Count - 2, eos = vocab.Count - 1;
        var textConfig = $$"""
        {
          "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": {{bos}}, "eos_token_id": {{eos}}, "pad_token_id": {{eos}},
          "hidden_act": "quick_gelu", "hidden_size": 32, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 64,
          "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 4,
          "num_hidden_layers": 2, "projection_dim": 32, "vocab_size": {{vocab.Count}}
        }
        """;
        Text("text_encoder/config.json", textConfig);
        Text("unet/config.json", UnetConfig);
        Text("vae/config.json", VaeConfig);

        TorchRuntime.Initialize(CPU);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var text = new ClipTextModel(ClipTextConfig.From(Config(textConfig, "demo text encoder")));
        Save(text, seed, Path.Combine(dir, "text_encoder", "model.safetensors"));
        using var unet = new UNet2DConditionModel(Config(UnetConfig, "demo UNet"));
        Save(unet, seed + 1, Path.Combine(dir, "unet", "diffusion_pytorch_model.safetensors"));
        using var vae = new AutoencoderKL(Config(VaeConfig, "demo VAE"));
        Save(vae, seed + 2, Path.Combine(dir, "vae", "diffusion_pytorch_model.safetensors"));
    }

    private static ModelConfig Config(string json, string name)
    {
        using var doc = JsonDocument.Parse(json);
        return new ModelConfig(doc.RootElement.Clone(), $"built-in {name} config");
    }

    /// <summary>
    /// Fills every parameter with <see cref="SeededInit"/> (one CPU generator, ordinal name order, so the bytes do not
    /// depend on how the modules initialise themselves) and writes the state dict (buffers included) as float32
    /// safetensors.
    /// </summary>
    private static void Save(nn.Module module, long seed, string path)
    {
        SeededInit.Fill(module, seed);
        var tensors = module.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.contiguous());
        SafeTensors.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
    }

    /// <summary>Writes the demo folder to a temporary directory, loads it with the instructpix2pix loader and removes the folder.</summary>
    public static EditingModel Load(Device device, ScalarType dtype, long seed = DefaultSeed)
    {
        var dir = Path.Combine(Path.GetTempPath(), "elect-demo-" + Guid.NewGuid().ToString("N"));
        try
        {
            WriteFolder(dir, seed);
            return InstructPix2Pix.InstructPix2PixModel.Load(dir, "demo", device, dtype);
        }
        finally
        {
            try { Directory.Delete(dir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
