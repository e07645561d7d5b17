using System.Text.Json;
using System.Text.Json.Nodes;
using Elect.Modeling;
using Elect.Models.Autoencoders;
using Elect.Models.TextEncoders;
using Elect.Models.Transformers;
using Elect.Models.Unets;
using Elect.Schedulers;
using TorchSharp;
using Xunit;

namespace Elect.Tests;

/// <summary>
/// Every config key is read, informational, or holds the only value the port supports; anything else
/// is an error naming the file, the key and the value (<see cref="ModelConfig.RejectUnsupported"/>).
/// </summary>
public sealed class ConfigKeysTests
{
    private static ModelConfig Edited(string name, string file, Action<JsonObject> edit)
    {
        var path = Path.Combine(PublishedSizeTests.ConfigsDir, name, file);
        var node = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(node);
        using var doc = JsonDocument.Parse(node.ToJsonString());
        return new ModelConfig(doc.RootElement, $"{name}/{file}");
    }

    private static ModelConfig Published(string name, string file = "config.json") => Edited(name, file, _ => { });

    /// <summary>Builds (or only reads, where building is not needed to check the keys) the component.</summary>
    private static void Read(string name, ModelConfig c)
    {
        TorchRuntime.Initialize();
        switch (name)
        {
            case "ip2p-unet": using (new UNet2DConditionModel(c)) { } break;
            case "ip2p-vae" or "sd3-vae": using (new AutoencoderKL(c)) { } break;
            case "ip2p-text-encoder" or "sd3-text-encoder-2": ClipTextConfig.From(c); break;
            case "sd3-text-encoder-3": T5Config.From(c); break;
            case "ultraedit-transformer": SD3TransformerConfig.From(c); break;
            case "ip2p-scheduler": EulerAncestralDiscreteScheduler.FromConfig(c); break;
            case "sd3-scheduler": FlowMatchEulerDiscreteScheduler.FromConfig(c); break;
            default: throw new ArgumentException(name);
        }
    }

    [Theory]
    [InlineData("ip2p-vae")]
    [InlineData("sd3-vae")]
    [InlineData("ip2p-text-encoder")]
    [InlineData("sd3-text-encoder-2")]
    [InlineData("sd3-text-encoder-3")]
    [InlineData("ultraedit-transformer")]
    public void PublishedConfigIsAccepted(string name) => Read(name, Published(name));
    // the UNet's published config (with layers_per_block cut to 1, same keys) is accepted by
    // PublishedSizeTests.Ip2pUNetMatchesDiffusers; built here uncut it would take 3.4 GB

    [Theory]
    [InlineData("ip2p-scheduler")]
    [InlineData("sd3-scheduler")]
    public void PublishedSchedulerConfigIsAccepted(string name) => Read(name, Published(name, "scheduler_config.json"));

    [Theory]
    [InlineData("ip2p-unet", "class_embed_type", "\"timestep\"", "'class_embed_type' = \"timestep\" is not supported (only null)")]
    [InlineData("ip2p-unet", "dual_cross_attention", "true", "'dual_cross_attention' = true is not supported (only false)")]
    [InlineData("ip2p-unet", "addition_embed_type", "\"text_time\"", "'addition_embed_type' = \"text_time\" is not supported (only null)")]
    [InlineData("ip2p-unet", "resnet_time_scale_shift", "\"scale_shift\"", "'resnet_time_scale_shift' = \"scale_shift\" is not supported (only \"default\")")]
    [InlineData("ip2p-unet", "only_cross_attention", "[true, false, false, false]", "'only_cross_attention' = [true,false,false,false] is not supported (only false)")]
    [InlineData("ip2p-unet", "some_future_option", "3", "'some_future_option' = 3 is not supported (this port does not implement the key)")]
    [InlineData("ip2p-vae", "latents_mean_scale", "[1, 2]", "'latents_mean_scale' = [1,2] is not supported (this port does not implement the key)")]
    [InlineData("sd3-vae", "norm_type", "\"spatial\"", "'norm_type' = \"spatial\" is not supported (this port does not implement the key)")]
    [InlineData("ip2p-text-encoder", "model_type", "\"clip_vision_model\"", "'model_type' = \"clip_vision_model\" is not supported (only \"clip_text_model\")")]
    [InlineData("sd3-text-encoder-2", "projection_hidden_act", "\"gelu\"", "'projection_hidden_act' = \"gelu\" is not supported (this port does not implement the key)")]
    [InlineData("sd3-text-encoder-3", "model_type", "\"umt5\"", "'model_type' = \"umt5\" is not supported (only \"t5\")")]
    [InlineData("sd3-text-encoder-3", "relative_attention_per_layer", "true", "'relative_attention_per_layer' = true is not supported (this port does not implement the key)")]
    [InlineData("ultraedit-transformer", "_class_name", "\"FluxTransformer2DModel\"", "'_class_name' = \"FluxTransformer2DModel\" is not supported (only \"SD3Transformer2DModel\")")]
    [InlineData("ultraedit-transformer", "guidance_embeds", "true", "'guidance_embeds' = true is not supported (this port does not implement the key)")]
    public void UnsupportedValueIsRejectedNamingFileKeyAndValue(string name, string key, string json, string message)
    {
        var c = Edited(name, "config.json", o => o[key] = JsonNode.Parse(json));
        var e = Assert.ThrowsAny<Exception>(() => Read(name, c));
        Assert.Equal($"{name}/config.json: {message}", e.Message);
    }

    [Theory]
    [InlineData("ip2p-scheduler", "rescale_betas_zero_snr", "true")]
    [InlineData("ip2p-scheduler", "final_sigmas_type", "\"zero\"")]
    [InlineData("sd3-scheduler", "use_karras_sigmas", "true")]
    [InlineData("sd3-scheduler", "shift_terminal", "0.02")]
    public void UnsupportedSchedulerValueIsRejected(string name, string key, string json)
    {
        var c = Edited(name, "scheduler_config.json", o => o[key] = JsonNode.Parse(json));
        var e = Assert.ThrowsAny<NotSupportedException>(() => Read(name, c));
        Assert.Contains($"{name}/scheduler_config.json", e.Message);
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void UnknownKeySetToNullAndInformationalKeysAreAccepted()
    {
        Read("sd3-text-encoder-3", Edited("sd3-text-encoder-3", "config.json", o =>
        {
            o["some_future_option"] = null;
            o["initializer_factor"] = 0.5;
            o["_name_or_path"] = "google/t5-v1_1-xxl";
        }));
        // transformers <= 4.22 wrote every generic PretrainedConfig field into a text encoder's config
        Read("ip2p-text-encoder", Edited("ip2p-text-encoder", "config.json", o =>
        {
            o["is_decoder"] = false;
            o["tie_word_embeddings"] = true;
            o["chunk_size_feed_forward"] = 0;
            o["id2label"] = new JsonObject { ["0"] = "LABEL_0" };
            o["num_beams"] = 1;
            o["bad_words_ids"] = null;
        }));
        // a feature's settings are informational while the feature is off
        Read("sd3-scheduler", Edited("sd3-scheduler", "scheduler_config.json", o => { o["base_shift"] = 0.7; o["max_shift"] = 1.3; }));
    }

    [SkippableFact]
    public void FixtureConfigsStillLoad()
    {
        var root = Fixtures.Require();
        foreach (var (folder, name, file) in new[]
                 {
                     ("ip2p-tiny/unet", "ip2p-unet", "config.json"), ("ip2p-tiny/vae", "ip2p-vae", "config.json"),
                     ("ip2p-tiny/text_encoder", "ip2p-text-encoder", "config.json"),
                     ("ip2p-tiny/scheduler", "ip2p-scheduler", "scheduler_config.json"),
                     ("ultraedit-tiny/transformer", "ultraedit-transformer", "config.json"),
                     ("ultraedit-tiny/vae", "sd3-vae", "config.json"),
                     ("ultraedit-tiny/text_encoder", "sd3-text-encoder-2", "config.json"),
                     ("ultraedit-tiny/text_encoder_2", "sd3-text-encoder-2", "config.json"),
                     ("ultraedit-tiny/text_encoder_3", "sd3-text-encoder-3", "config.json"),
                     ("ultraedit-tiny/scheduler", "sd3-scheduler", "scheduler_config.json"),
                 })
            Read(name, ModelConfig.Load(Path.Combine(root, "models", folder, file)));
    }
}
